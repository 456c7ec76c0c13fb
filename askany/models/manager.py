"""Model management in one import: download, verify, import and export the model folders AskAny loads offline.

The work is done by modules with one job each; this one only gathers their public API:

* `askany.models.roles`: the role table (each role's setting, offline flag, kind, loader).
* `askany.models.files`: folder naming, manifests, checksums, locking, the errors.
* `askany.models.download`: `--download-models` from Hugging Face or ModelScope
  (`askany.models.download_hanlp` for HanLP's archives, `askany.models.retry` for retries).
* `askany.models.verify`: `--verify-models`.
* `askany.models.hf_cache`: `--import-hf-cache`.
* `askany.models.bundle`: `--export-models` and `--import-models`.
* `askany.models.env`: the `.env` lines for offline use (`--write-env`).
"""

from askany.models.bundle import ExportResult, export_models, import_models
from askany.models.download import download_models
from askany.models.download_hanlp import DOWNLOADS_DIR
from askany.models.env import env_lines, write_env
from askany.models.files import (
    MANIFEST,
    BundleError,
    DiskFullError,
    DownloadResult,
    HubUnreachableError,
    ModelDownloadError,
    ModelManagerError,
    ModelScopeMissingError,
    ModelsDirBusyError,
    NotInCacheError,
    OfflineModeError,
    TargetExistsError,
    UnknownRoleError,
    human_size,
    read_manifest,
)
from askany.models.hf_cache import import_hf_cache
from askany.models.roles import ROLES
from askany.models.verify import VerifyRow, verify_models

__all__ = [
    "DOWNLOADS_DIR", "MANIFEST", "ROLES", "BundleError", "DiskFullError", "DownloadResult", "ExportResult",
    "HubUnreachableError", "ModelDownloadError", "ModelManagerError", "ModelScopeMissingError",
    "ModelsDirBusyError", "NotInCacheError", "OfflineModeError", "TargetExistsError", "UnknownRoleError",
    "VerifyRow", "download_models", "env_lines", "export_models", "human_size", "import_hf_cache",
    "import_models", "read_manifest", "verify_models", "write_env",
]
