"""The Gradio chat page, one of AskAny's front doors: `serve()` runs it, `build_app()` builds it.

Modules: i18n (the page's words, zh and en), render (results as HTML and chat Markdown),
handlers (the Gradio event handlers and one session's chat state), app (layout, theme),
serving (the launcher, the login, local-only file routes); static/ holds the page's CSS and its
one script.
"""

from askany.core import environment

# Gradio and huggingface_hub read their telemetry switches when gradio is first imported, so they
# are turned off here, before any module of this package imports it (core/environment.py lists
# every variable AskAny touches). HF_HUB_OFFLINE is deliberately not set: whether models may be
# downloaded is the settings' call (HF_HUB_OFFLINE, *_LOCAL_FILES_ONLY), as for the CLI.
environment.no_telemetry()

from askany.web.app import build_app, warm_up  # noqa: E402
from askany.web.serving import PageServer, page_app, serve, warn_if_open  # noqa: E402

__all__ = ["PageServer", "build_app", "page_app", "serve", "warm_up", "warn_if_open"]
