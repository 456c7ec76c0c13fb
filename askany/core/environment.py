"""The process environment variables AskAny reads or writes that are not settings.

AskAny's own configuration is read through `askany.core.config.Settings` only. This module is
the one, deliberately small, exception: variables that third-party libraries read themselves,
which AskAny has to read the same way (to agree with the library) or set (to steer it), plus
the one variable that says where the settings file is and so cannot itself be a setting.

| variable | read by | what AskAny does with it |
| --- | --- | --- |
| ASKANY_ENV_FILE | AskAny, before settings exist | which `.env` file `Settings` reads |
| HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE | huggingface_hub, transformers | honours them: no hub access at all |
| HF_ENDPOINT | huggingface_hub | the hub (or mirror) named in messages and downloads |
| HF_HUB_CACHE, HF_HOME | huggingface_hub | where models already downloaded by the hub are found |
| HF_HUB_DOWNLOAD_TIMEOUT | huggingface_hub | given the HUB_TIMEOUT_SECONDS default when unset |
| MODELSCOPE_DOMAIN | modelscope | set for the length of a `--source modelscope` download |
| HANLP_URL | HanLP | the base address of HanLP's file server |
| GRADIO_ANALYTICS_ENABLED, HF_HUB_DISABLE_TELEMETRY | gradio, huggingface_hub, at import | set off before the page imports gradio: no phoning home |
| XDG_RUNTIME_DIR | platformdirs (through pgserver) | given a private default when unset, so it does not warn on every command |

Everything else calls the functions here rather than `os.environ`, so a reader finds every
variable AskAny touches outside its settings in this file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

ENV_FILE_VARIABLE = "ASKANY_ENV_FILE"
#: Either one switches off every model hub access (the libraries' own rule, which AskAny follows).
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
#: How huggingface_hub and transformers spell "on" for their boolean variables.
TRUTHY = {"1", "true", "yes", "on"}


def env_file() -> Path:
    """The `.env` file settings are read from (`ASKANY_ENV_FILE` overrides `./.env`)."""
    return Path(os.environ.get(ENV_FILE_VARIABLE, ".env"))


def names() -> set[str]:
    """The names of every variable set in the environment, lower-cased (settings are case-insensitive)."""
    return {name.lower() for name in os.environ}


def offline_variables() -> list[str]:
    """Which of HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are switched on in the environment."""
    return [name for name in OFFLINE_VARIABLES if os.environ.get(name, "").strip().lower() in TRUTHY]


def hub_offline() -> bool:
    """True when the environment forbids any model hub access."""
    return bool(offline_variables())


def hf_endpoint() -> str | None:
    """HF_ENDPOINT (a hub mirror) when set."""
    return os.environ.get("HF_ENDPOINT") or None


def hf_hub_cache() -> Path:
    """The Hugging Face cache folder, read now: HF_HUB_CACHE, else HF_HOME/hub, else the hub's default.

    huggingface_hub fixes its own value when it is imported; reading the variables here too
    means a cache named after that (in a test, or by a caller) is still the one looked in.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def default_download_timeout(seconds: float) -> None:
    """Give huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT this value unless the user set one."""
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(seconds)))


def modelscope_domain() -> str | None:
    """MODELSCOPE_DOMAIN (a ModelScope mirror's host) when set."""
    return os.environ.get("MODELSCOPE_DOMAIN") or None


@contextlib.contextmanager
def modelscope_domain_set_to(domain: str) -> Iterator[None]:
    """MODELSCOPE_DOMAIN is how modelscope is pointed at a mirror: set it for the block, then restore it."""
    saved = os.environ.get("MODELSCOPE_DOMAIN")
    os.environ["MODELSCOPE_DOMAIN"] = domain
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MODELSCOPE_DOMAIN", None)
        else:
            os.environ["MODELSCOPE_DOMAIN"] = saved


def hanlp_url() -> str | None:
    """HANLP_URL, HanLP's own variable for its file server's base address, when set."""
    return os.environ.get("HANLP_URL") or None


def no_telemetry() -> None:
    """Gradio's version check and launch analytics, and the hub's telemetry, off: call before importing gradio."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def default_runtime_dir() -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
