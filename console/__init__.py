"""cortex-console: the Textual fleet console and --json scripting."""
