"""The gateway's configuration: cortex.toml, the models.toml it names, and where state lives."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cortex.common.config import (
    ConfigError,
    GatewayConfig,
    ModelProfile,
    ModelsConfig,
    load_config,
    user_dir,
)

STATE_FILE_NAME = "gateway-state.json"
RESPONSES_FILE_NAME = "responses.sqlite3"


@dataclass
class Settings:
    """Everything the gateway reads at start, with relative paths resolved."""

    config: GatewayConfig
    models: ModelsConfig = field(default_factory=ModelsConfig)
    config_path: Path | None = None
    models_path: Path | None = None
    state_path: Path = field(default_factory=lambda: user_dir("state") / STATE_FILE_NAME)
    responses_path: Path | None = None  # default: beside the state file

    def __post_init__(self) -> None:
        self.profiles: dict[str, ModelProfile] = {p.id: p for p in self.models.models}
        if self.responses_path is None:
            self.responses_path = self.state_path.parent / RESPONSES_FILE_NAME

    @classmethod
    def load(cls, config_path: str | Path | None) -> Settings:
        """Read cortex.toml (or the defaults) and its models.toml; ConfigError if either is bad."""
        path = Path(config_path) if config_path is not None else None
        config = load_config(path, GatewayConfig)
        base = path.parent if path is not None else Path.cwd()
        models_path = None
        models = ModelsConfig()
        if config.gateway.models_file:
            models_path = _resolve(base, config.gateway.models_file)
            if not models_path.is_file():
                where = f"{path}: " if path is not None else ""
                raise ConfigError(
                    f"{where}`gateway.models_file` names {models_path}, which does not exist; "
                    "fix the path (relative paths start at cortex.toml's folder) or remove the key"
                )
            models = load_config(models_path, ModelsConfig)
        if config.gateway.state_file:
            state_path = _resolve(base, config.gateway.state_file)
        else:
            state_path = user_dir("state") / STATE_FILE_NAME
        responses_db = config.gateway.responses_db
        return cls(
            config=config,
            models=models,
            config_path=path,
            models_path=models_path,
            state_path=state_path,
            responses_path=_resolve(base, responses_db) if responses_db else None,
        )

    def clamps_max_tokens(self, model: str) -> bool:
        """Whether requests for ``model`` get max_tokens lowered to fit (clamp_max_tokens)."""
        profile = self.profiles.get(model)
        if profile is not None and profile.clamp_max_tokens is not None:
            return profile.clamp_max_tokens
        return self.config.gateway.clamp_max_tokens

    def resolve_alias(self, name: str, known: Callable[[str], bool] = lambda _: False) -> str:
        """The model id a client's name stands for: an exact alias, then the first glob match.

        A name that is a profile id or that ``known`` recognises (a model some neuron has)
        is never rewritten, so a broad glob such as ``*`` cannot hide a real model.
        """
        aliases = self.config.aliases
        if name in self.profiles or known(name):
            return name
        if name in aliases:
            return aliases[name]
        for pattern, target in aliases.items():
            if fnmatch.fnmatchcase(name, pattern):
                return target
        return name


def _resolve(base: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate).resolve()
