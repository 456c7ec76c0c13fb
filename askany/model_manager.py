"""Model management in one import: download, verify, import and export the model folders AskAny loads offline.

The work is done by modules with one job each; this one only gathers their public API:

* `askany.model_files`: folder naming, manifests, checksums, locking, the errors.
* `askany.model_download`: `--download-models` from Hugging Face or ModelScope
  (`askany.model_download_hanlp` for HanLP's archives, `askany.model_retry` for retries).
* `askany.model_verify`: `--verify-models`.
* `askany.model_hf_cache`: `--import-hf-cache`.
* `askany.model_bundle`: `--export-models` and `--import-models`.
* `askany.model_env`: the `.env` lines for offline use (`--write-env`).
"""

from askany.model_bundle import ExportResult, export_models, import_models
from askany.model_download import download_models
from askany.model_download_hanlp import DOWNLOADS_DIR
from askany.model_env import env_lines, write_env
from askany.model_files import (
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
from askany.model_hf_cache import import_hf_cache
from askany.model_verify import VerifyRow, verify_models

__all__ = [
    "DOWNLOADS_DIR", "MANIFEST", "BundleError", "DiskFullError", "DownloadResult", "ExportResult",
    "HubUnreachableError", "ModelDownloadError", "ModelManagerError", "ModelScopeMissingError",
    "ModelsDirBusyError", "NotInCacheError", "OfflineModeError", "TargetExistsError", "UnknownRoleError",
    "VerifyRow", "download_models", "env_lines", "export_models", "human_size", "import_hf_cache",
    "import_models", "read_manifest", "verify_models", "write_env",
]
