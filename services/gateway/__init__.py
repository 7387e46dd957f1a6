"""cortex-gateway: one OpenAI + Anthropic API for the whole fleet."""
