"""`--download-models`: fetch each role's model from a hub into `MODELS_DIR/<name>`, resumably.

Downloads go to a sibling `MODELS_DIR/.partial-<name>` that is kept between runs,
so running the same command again resumes; only a folder that passed the checks
(the hub's sizes and checksums, the role's files, config and weights) is renamed
into place. Sources and network settings (all read when the function runs, not at import):

* Hugging Face (default): `huggingface_hub.snapshot_download` against `--endpoint`,
  else `HF_ENDPOINT` (a mirror such as https://hf-mirror.com), else huggingface.co.
  huggingface_hub 2.4 talks through an `httpx2.Client` created with
  `trust_env=True`, so `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` apply
  (read once, when its shared client is first created). It resumes at file
  granularity across runs: finished files in the partial folder are recognised by
  their metadata in `.partial-<name>/.cache/huggingface/` and skipped; a file cut
  off mid-way is resumed with an HTTP Range request inside the same run (up to 5
  times), but its partial bytes are discarded when the process ends.
* ModelScope (`source="modelscope"`): `modelscope.snapshot_download`, an optional
  extra (`pip install 'askany[modelscope]'`); `--endpoint` sets `MODELSCOPE_DOMAIN`.
* HanLP (role `hanlp`, any source): HanLP's own file server, see
  `askany.models.download_hanlp`.

Network steps are retried as `askany.models.retry` says.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askany.core import environment
from askany.core.config import Settings
from askany.core.errors import ModelUnavailableError
from askany.models import retry as model_retry
from askany.models.download_hanlp import DOWNLOADS_DIR, archive_stem, fetch_hanlp, hanlp_archive_url
from askany.models.files import (
    MANIFEST,
    DownloadResult,
    ModelDownloadError,
    ModelManagerError,
    ModelScopeMissingError,
    OfflineModeError,
    UnknownRoleError,
    check_target,
    disk_full_means,
    hash_folder,
    is_disk_full,
    is_local_path,
    models_dir_lock,
    move_into_place,
    new_manifest,
    read_manifest,
    short_error,
    with_models_dir,
    write_json,
)
from askany.models.kinds import Kind
from askany.models.resolve import DEFAULT_ENDPOINT, models_dir_candidate
from askany.models.retry import Transient, is_transient, retrying, unreachable
from askany.models.roles import ROLES, Role, get_role
from askany.models.verify import check_config, check_weights

log = logging.getLogger(__name__)

SOURCES = ("hf", "modelscope")
#: What download tools leave inside a target folder: never part of a model.
LEFTOVERS = (".cache", DOWNLOADS_DIR, "._____temp", ".msc", ".mdl", ".mv")
#: Files AskAny never needs: other runtimes' weights, pictures for the model card.
IGNORE_PATTERNS = ["onnx/*", "*.onnx", "*.onnx_data", "openvino/*", "*.h5", "*.msgpack", "*.ot",
                   "flax_model*", "tf_model*", "rust_model*", "*.gguf", "imgs/*", "assets/*",
                   "*.jpg", "*.jpeg", "*.png", "*.gif"]


@dataclass(frozen=True)
class _Plan:
    """What to fetch for one role: from where, and under which folder name."""

    role: Role
    source: str  # hf, modelscope, hanlp, or local (nothing to fetch)
    repo_id: str  # hub id, or the archive name for HanLP
    name: str  # folder name in MODELS_DIR
    url: str | None = None  # HanLP archive URL


def download_models(settings: Settings, roles: list[str] | None = None, source: str = "hf",
                    endpoint: str | None = None, models_dir: Path | str | None = None,
                    progress: bool = True) -> list[DownloadResult]:
    """Fetch each role's model into `MODELS_DIR/<name>`; all roles when `roles` is empty.

    Every target is checked before anything is fetched, so bad input changes nothing.
    A role already downloaded by AskAny from the same repo is reported "up to date"
    without touching the network (delete its folder to fetch it again).
    """
    settings = with_models_dir(settings, models_dir)
    wanted = _check_roles(roles)
    if source not in SOURCES:
        raise ModelManagerError(f"Unknown source '{source}'; use one of: {', '.join(SOURCES)}.")
    _refuse_when_offline()
    plans = [_plan(settings, role, source) for role in wanted]
    for plan in plans:
        if plan.source != "local":
            check_target(plan.repo_id, settings.models_dir / plan.name, plan.role.setting)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with models_dir_lock(settings.models_dir), _only_this_endpoint(_endpoint(endpoint)):
        return [_download_one(settings, plan, endpoint, progress) for plan in plans]


# ====================================================================== planning

def _check_roles(roles: list[str] | None) -> list[Role]:
    unknown = [role for role in roles or [] if role not in ROLES]
    if unknown:
        raise UnknownRoleError(f"Unknown model role '{unknown[0]}'; use one or more of: {', '.join(ROLES)}.")
    return [get_role(name) for name in (dict.fromkeys(roles) if roles else ROLES)]


def _refuse_when_offline() -> None:
    """A download was asked for, but the environment forbids any hub access: say so, do nothing."""
    from huggingface_hub import constants

    if environment.hub_offline() or constants.HF_HUB_OFFLINE:
        raise OfflineModeError("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, which forbids downloads; "
                               "run this command with HF_HUB_OFFLINE=0 or unset it for the download.")


def _plan(settings: Settings, role: Role, source: str) -> _Plan:
    name = role.configured_name(settings)
    if is_local_path(name):
        return _Plan(role, "local", name, Path(name).name)
    if role.kind is Kind.HANLP:  # HanLP's archives come from its own file server, whatever the source
        url = hanlp_archive_url(name, settings.askany_hanlp_tok_url)
        stem = archive_stem(url)
        return _Plan(role, "hanlp", stem, stem, url)
    if not name:
        raise ModelManagerError(f"{role.setting} is empty; set it to a hub id such as BAAI/bge-m3.")
    return _Plan(role, source, name, models_dir_candidate(settings, name).name)


# ====================================================================== one download

def _download_one(settings: Settings, plan: _Plan, endpoint: str | None, progress: bool) -> DownloadResult:
    if plan.source == "local":
        return DownloadResult(plan.role.name, plan.repo_id, str(Path(plan.repo_id).expanduser().resolve()),
                              "local", "skipped", note=f"{plan.role.setting} is a local folder: nothing to download")
    target = settings.models_dir / plan.name
    manifest = read_manifest(target)
    if manifest is not None and _looks_complete(plan.role, target, manifest):
        result = _result(plan, target, manifest, "up to date", 0.0)
        result.note = "already downloaded (delete the folder to fetch it again)"
        return result
    partial = settings.models_dir / f".partial-{plan.name}"
    started = time.monotonic()
    log.info("Downloading the %s model %s into %s", plan.role.name, plan.repo_id, target)
    try:
        with disk_full_means(f"The disk holding {settings.models_dir} is full while downloading the {plan.role.name} "
                             f"model; free some space and run the same command again to resume (finished files "
                             f"are kept in {partial})."):
            meta, expected = _fetch(settings, plan, partial, target, endpoint, progress)
            manifest = _finish_download(plan, partial, target, meta, expected, progress)
    finally:
        with contextlib.suppress(OSError):
            partial.rmdir()  # only when nothing was fetched: a partial download is kept for the re-run
    return _result(plan, target, manifest, "downloaded", time.monotonic() - started)


def _fetch(settings: Settings, plan: _Plan, partial: Path, target: Path, endpoint: str | None,
           progress: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Fill `partial`; return manifest fields and the expected files (size, sha256, git blob id)."""
    partial.mkdir(parents=True, exist_ok=True)
    if plan.source == "hf":
        return _fetch_hf(settings, plan, partial, _endpoint(endpoint), progress)
    if plan.source == "modelscope":
        return _fetch_modelscope(plan, partial, endpoint), {}
    return fetch_hanlp(settings, plan.url or "", partial, target, _endpoint(endpoint), progress), {}


def _finish_download(plan: _Plan, partial: Path, target: Path, meta: dict[str, Any],
                     expected: dict[str, dict[str, Any]], progress: bool) -> dict[str, Any]:
    """Check the partial folder against the hub's listing and the role's needs, then move it into place."""
    if expected:
        _drop_unlisted(partial, expected)
    files = hash_folder(partial, progress, f"Checking {plan.name}", skip=LEFTOVERS, git=bool(expected))
    bad = _mismatches(expected, files)
    if bad:
        for name in bad:  # drop them so a re-run fetches them again
            (partial / name).unlink(missing_ok=True)
            (partial / ".cache" / "huggingface" / "download" / f"{name}.metadata").unlink(missing_ok=True)
        raise ModelDownloadError(f"{', '.join(bad[:3])} of {plan.repo_id} arrived damaged (checksum or size differs "
                                 f"from the hub's); run the same command again to fetch {'it' if len(bad) == 1 else 'them'} "
                                 f"again.")
    _remove_leftovers(partial)
    role = plan.role
    try:
        role.check_folder(partial)
    except ModelUnavailableError:
        missing = ", ".join(role.missing_files(partial)) or "the files this role needs"
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelDownloadError(f"{plan.repo_id} does not contain what the {role.name} role needs ({missing}); "
                                 f"set {role.setting} to a {role.name} model.") from None
    # HanLP's config already names the final folder, checked once it is in place
    for check in (check_weights,) if role.kind is Kind.HANLP else (check_config, check_weights):
        ok, note = check(role, partial)
        if not ok:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelDownloadError(f"{plan.repo_id} arrived whole but is not a usable {role.name} model ({note}); "
                                     f"set {role.setting} to another model.")
    for entry in files.values():
        entry.pop("git", None)
    manifest = new_manifest(role.name, plan.repo_id, meta, files)
    write_json(partial / MANIFEST, manifest)
    move_into_place(partial, target)
    log.info("The %s model is ready in %s", role.name, target)
    return manifest


def _drop_unlisted(folder: Path, expected: dict[str, dict[str, Any]]) -> None:
    """Files a kept partial folder got from an older commit of the repo do not belong in the model."""
    for path in [p for p in folder.rglob("*") if p.is_file()]:
        relative = path.relative_to(folder)
        if relative.parts[0] not in LEFTOVERS and relative.as_posix() not in expected:
            path.unlink()


def _mismatches(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Files whose size, sha256 (LFS) or git blob id differs from the hub's listing."""
    bad = []
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or got["size"] != want["size"] \
                or (want.get("sha256") and got["sha256"] != want["sha256"]) \
                or (want.get("git") and got.get("git") and got["git"] != want["git"]):
            bad.append(name)
    return bad


def _remove_leftovers(folder: Path) -> None:
    for name in LEFTOVERS:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _result(plan: _Plan, target: Path, manifest: dict[str, Any], status: str, seconds: float) -> DownloadResult:
    return DownloadResult.placed(plan.role.name, plan.repo_id, target, manifest.get("source", plan.source), status,
                                 manifest.get("commit"), manifest.get("files", {}), seconds)


def _looks_complete(role: Role, folder: Path, manifest: dict[str, Any]) -> bool:
    """Cheap check (sizes only) that an earlier AskAny download is still whole."""
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
    return not role.missing_files(folder)


# ====================================================================== Hugging Face

def _endpoint(endpoint: str | None) -> str:
    return (endpoint or environment.hf_endpoint() or DEFAULT_ENDPOINT).rstrip("/")


@contextlib.contextmanager
def _only_this_endpoint(endpoint: str) -> Iterator[None]:
    """Keep huggingface_hub's side requests on the chosen endpoint.

    huggingface_hub 2.4 fetches `{constants.ENDPOINT}/api/agent-harnesses` (fixed when
    it was imported) to build its User-Agent: with `--endpoint` or a late HF_ENDPOINT
    that would contact huggingface.co behind the user's back.
    """
    from huggingface_hub import constants

    saved = constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE
    constants.ENDPOINT = endpoint  # the template must agree: hf_hub_url swaps one prefix for the other
    constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    try:
        yield
    finally:
        constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE = saved


def _fetch_hf(settings: Settings, plan: _Plan, partial: Path, endpoint: str,
              progress: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=endpoint)
    commit, listing = _hub_listing(api, plan, endpoint, settings.hub_timeout_seconds)
    ignore = _ignore_patterns(list(listing))
    expected = _filtered(listing, ignore)

    def attempt() -> None:
        with _hub_progress(progress):
            snapshot_download(plan.repo_id, revision=commit, local_dir=partial, endpoint=endpoint,
                              etag_timeout=settings.hub_timeout_seconds, ignore_patterns=ignore)
        _require_files(partial, expected)

    try:
        retrying(attempt, f"downloading {plan.repo_id}")
    except Exception as error:
        if is_disk_full(error) or not is_transient(error):
            raise
        raise ModelDownloadError(f"Downloading {plan.repo_id} from {endpoint} failed after {model_retry.ATTEMPTS} "
                                 f"tries ({short_error(error)}); run the same command again to resume (finished "
                                 f"files are kept in {partial}).") from None
    meta = {"source": "hf", "endpoint": endpoint, "revision": "main", "commit": commit}
    return meta, expected


def _hub_listing(api: Any, plan: _Plan, endpoint: str, timeout: float) -> tuple[str, dict[str, dict[str, Any]]]:
    """The commit of `main` and its file listing; the first contact, so it names an unreachable endpoint."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    setting = plan.role.setting

    def listing() -> tuple[str, dict[str, dict[str, Any]]]:
        info = api.model_info(plan.repo_id, revision="main", timeout=timeout)
        if not info.sha:
            raise ModelDownloadError(f"{endpoint} did not say which commit {plan.repo_id} is at; "
                                     f"check that HF_ENDPOINT points to a Hugging Face Hub or mirror.")
        files = {}
        for item in api.list_repo_tree(plan.repo_id, recursive=True, revision=info.sha):
            if hasattr(item, "blob_id") and hasattr(item, "size"):
                lfs = getattr(item, "lfs", None)
                files[item.path] = {"size": item.size, "git": None if lfs else item.blob_id,
                                    "sha256": lfs.sha256 if lfs else None}
        return info.sha, files

    try:
        return retrying(listing, f"asking {endpoint} about {plan.repo_id}")
    except GatedRepoError:
        raise ModelDownloadError(f"{plan.repo_id} on {endpoint} is gated; accept its licence on the hub and set "
                                 f"HF_TOKEN, or set {setting} to another model.") from None
    except RepositoryNotFoundError:
        raise ModelDownloadError(f"{plan.repo_id} was not found on {endpoint} (or is private: set HF_TOKEN); check "
                                 f"{setting} (a hub id such as BAAI/bge-m3) or HF_ENDPOINT.") from None
    except HfHubHTTPError as error:
        if is_transient(error):
            raise unreachable(endpoint, plan.repo_id, error) from None
        raise ModelDownloadError(f"{endpoint} answered {error.response.status_code} for {plan.repo_id}; check that "
                                 f"HF_ENDPOINT points to a Hugging Face Hub or mirror.") from None
    except ValueError as error:  # not JSON: some other web server
        raise ModelDownloadError(f"{endpoint} does not answer like a Hugging Face Hub ({short_error(error)}); "
                                 f"check HF_ENDPOINT.") from None
    except Exception as error:
        if is_transient(error):
            raise unreachable(endpoint, plan.repo_id, error) from None
        raise


def _ignore_patterns(files: list[str]) -> list[str]:
    """Skip other runtimes' weights; with safetensors present, skip the duplicate pickles too."""
    patterns = list(IGNORE_PATTERNS)
    if any(name.endswith(".safetensors") for name in files):
        patterns += ["pytorch_model*.bin", "*.bin.index.json", "training_args.bin"]
    return patterns


def _filtered(listing: dict[str, dict[str, Any]], ignore: list[str]) -> dict[str, dict[str, Any]]:
    from huggingface_hub.utils import filter_repo_objects

    keep = set(filter_repo_objects(list(listing), ignore_patterns=ignore))
    return {name: entry for name, entry in listing.items() if name in keep}


def _require_files(folder: Path, expected: dict[str, dict[str, Any]]) -> None:
    """snapshot_download returns an incomplete local_dir when the hub drops out: catch that."""
    short = [name for name, entry in expected.items()
             if not (folder / name).is_file() or (folder / name).stat().st_size != entry["size"]]
    if short:
        raise Transient(f"{len(short)} file(s) incomplete, for example {short[0]}")


@contextlib.contextmanager
def _hub_progress(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


# ====================================================================== ModelScope

def _fetch_modelscope(plan: _Plan, partial: Path, endpoint: str | None) -> dict[str, Any]:
    try:
        from modelscope import snapshot_download as ms_snapshot_download
    except ImportError:
        raise ModelScopeMissingError("The ModelScope source needs the modelscope package; install it with "
                                     "pip install 'askany[modelscope]' or use --source hf.") from None
    import inspect

    domain = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/") if endpoint \
        else environment.modelscope_domain() or "www.modelscope.cn"
    accepted = inspect.signature(ms_snapshot_download).parameters
    options: dict[str, Any] = {"local_dir": str(partial)}
    if "ignore_patterns" in accepted:
        options["ignore_patterns"] = IGNORE_PATTERNS
    try:
        with environment.modelscope_domain_set_to(domain):
            retrying(lambda: ms_snapshot_download(plan.repo_id, **options),
                     f"downloading {plan.repo_id} from ModelScope")
    except Exception as error:
        if is_disk_full(error):
            raise
        raise ModelDownloadError(f"Downloading {plan.repo_id} from ModelScope ({domain}) failed "
                                 f"({short_error(error)}); check the network or {plan.role.setting}, then "
                                 f"run the same command again.") from None
    return {"source": "modelscope", "endpoint": domain, "revision": "master", "commit": None}
