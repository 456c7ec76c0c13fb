"""Serve the AskAny chat page: ``python ui/app.py`` (the same as ``python -m askany.main --ui``).

A thin launcher: the page lives in `askany.web`. Host, port, language and the
upload limit come from the settings (UI_HOST, UI_PORT, UI_LANGUAGE, UPLOAD_MAX_MB).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from askany.cli.main import configure_logging  # noqa: E402
from askany.core.errors import AskAnyError  # noqa: E402


def main() -> int:
    configure_logging(verbose="-v" in sys.argv[1:])
    from askany.web import serve

    try:
        serve()
    except AskAnyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
