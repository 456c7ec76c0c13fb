"""HanLP tokenizer downloads: the archive from HanLP's file server, and the transformer it names.

Fetched over `httpx` (which honours HTTP_PROXY/HTTPS_PROXY/NO_PROXY) with Range
resume across runs: finished and partial archives are kept in
`<partial folder>/.askany-downloads`. The tokenizer archive is `HANLP_TOK_MODEL`
when that is a URL or a `hanlp.pretrained` key, else the `ASKANY_HANLP_TOK_URL` setting,
else HanLP's `COARSE_ELECTRA_SMALL_ZH`; its host is `HANLP_URL` (HanLP's own environment
variable, read through `askany.core.environment`: the base URL, default
https://file.hankcs.com/hanlp/). The transformer the tokenizer names (for example
`hfl/chinese-electra-180g-small-discriminator`, which HanLP itself would fetch at load
time as `transformers/electra_zh_small_*.zip`) is put in `<folder>/transformer` and `config.json` is rewritten to point at it, so
`hanlp.load(folder)` works with no network.
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from askany.core import environment
from askany.core.config import Settings
from askany.models import retry as model_retry
from askany.models.files import (
    CHUNK,
    HubUnreachableError,
    ModelDownloadError,
    is_disk_full,
    progress_bar,
    read_json,
    safe_join,
    short_error,
)
from askany.models.kinds import TRANSFORMER_DIR, repoint_hanlp
from askany.models.retry import Transient, is_transient, retrying, unreachable

DEFAULT_HANLP_URL = "https://file.hankcs.com/hanlp/"
DOWNLOADS_DIR = ".askany-downloads"
#: What a HanLP transformer folder needs when weights come from the HanLP model itself.
TRANSFORMER_PATTERNS = ["config.json", "tokenizer*", "vocab*", "special_tokens_map.json", "added_tokens.json",
                        "merges.txt", "*.model", "sentencepiece*"]


def hanlp_base() -> str:
    return (environment.hanlp_url() or DEFAULT_HANLP_URL).rstrip("/") + "/"


def _rebase(official_url: str) -> str:
    """HanLP's URLs are built from HANLP_URL at import; rebuild them from the current one."""
    from hanlp_common.constant import HANLP_URL as base_at_import

    if official_url.startswith(base_at_import):
        return hanlp_base() + official_url[len(base_at_import):]
    return official_url


def hanlp_archive_url(name: str, override: str = "") -> str:
    """HANLP_TOK_MODEL as a URL or hanlp.pretrained key; else `override` (ASKANY_HANLP_TOK_URL); else
    COARSE_ELECTRA_SMALL_ZH."""
    if name.startswith(("http://", "https://")):
        return name
    import hanlp.pretrained

    if name and name in hanlp.pretrained.ALL:
        return _rebase(hanlp.pretrained.ALL[name])
    if override:
        return override
    from hanlp.pretrained.tok import COARSE_ELECTRA_SMALL_ZH

    return _rebase(COARSE_ELECTRA_SMALL_ZH)


def archive_stem(url: str) -> str:
    """The archive's file name without .zip/.tar.gz/.tgz: the model's folder name."""
    base = url.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".zip", ".tar.gz", ".tgz"):
        base = base.removesuffix(suffix)
    return base


def fetch_hanlp(settings: Settings, url: str, partial: Path, target: Path, endpoint: str,
                progress: bool) -> dict[str, Any]:
    """Tokenizer archive plus the transformer files it names, so hanlp.load works offline; the manifest fields."""
    downloads = partial / DOWNLOADS_DIR
    with _http_client(settings) as client:
        archive = _fetch_url(client, url, downloads / _basename(url), progress)
        _extract_zip(archive, partial, url)
        config_path = partial / "config.json"
        config = read_json(config_path)
        if not isinstance(config, dict) or "classpath" not in config:
            raise ModelDownloadError(f"{url} is not a HanLP model (no config.json with a classpath); "
                                     f"set HANLP_TOK_MODEL or ASKANY_HANLP_TOK_URL to a HanLP tokenizer archive.")
        meta: dict[str, Any] = {"source": "hanlp", "endpoint": hanlp_base(), "url": url,
                                "revision": None, "commit": None}
        transformer = config.get("transformer")
        if isinstance(transformer, str) and transformer:
            meta["transformer"] = transformer
            meta["transformer_source"] = _fetch_transformer(client, transformer, partial, endpoint, progress)
            repoint_hanlp(partial, target)
    return meta


def _fetch_transformer(client: Any, name: str, partial: Path, endpoint: str, progress: bool) -> str:
    """Put the transformer's config and tokenizer in `partial/transformer`; return where they came from."""
    folder = partial / TRANSFORMER_DIR
    if (folder / "config.json").is_file():
        return "included in the archive"
    from hanlp.layers.transformers.resource import tokenizer_mirrors

    if name in tokenizer_mirrors:
        source = _rebase(tokenizer_mirrors[name])
        archive = _fetch_url(client, source, partial / DOWNLOADS_DIR / _basename(source), progress)
        _extract_zip(archive, folder, source)
    elif Path(name).is_absolute():
        raise ModelDownloadError(f"The HanLP model names its transformer as the folder {name}, which is not in the "
                                 f"archive; rebuild the archive with its transformer folder included.")
    else:
        source = f"{endpoint}/{name}"
        _fetch_hub_transformer(name, folder, endpoint)
    if not (folder / "config.json").is_file():
        raise ModelDownloadError(f"The transformer {name} that the HanLP model needs has no config.json at "
                                 f"{source}; set HANLP_TOK_MODEL to another HanLP tokenizer.")
    return source


def _fetch_hub_transformer(name: str, folder: Path, endpoint: str) -> None:
    """A transformer HanLP has no mirror for: its config and tokenizer from the hub (weights are in HanLP's model)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        retrying(lambda: snapshot_download(name, local_dir=folder, endpoint=endpoint,
                                           allow_patterns=TRANSFORMER_PATTERNS), f"downloading {name}")
    except RepositoryNotFoundError:
        raise ModelDownloadError(f"The transformer {name} that the HanLP model needs was not found on {endpoint}; "
                                 f"set HF_ENDPOINT, or HANLP_TOK_MODEL to another HanLP tokenizer.") from None
    except Exception as error:
        if is_transient(error):
            raise unreachable(endpoint, name, error) from None
        raise
    shutil.rmtree(folder / ".cache", ignore_errors=True)


@contextlib.contextmanager
def _http_client(settings: Settings) -> Iterator[Any]:
    """httpx with trust_env (the default): HTTP_PROXY/HTTPS_PROXY/NO_PROXY apply."""
    import httpx

    timeout = httpx.Timeout(max(30.0, settings.hub_timeout_seconds * 6), connect=settings.hub_timeout_seconds)
    with httpx.Client(follow_redirects=True, timeout=timeout, trust_env=True) as client:
        yield client


def _basename(url: str) -> str:
    return url.split("#")[0].split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "download"


def _fetch_url(client: Any, url: str, dest: Path, progress: bool) -> Path:
    """GET `url` into `dest`, resuming `dest.part` with a Range request; kept across runs."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        retrying(lambda: _fetch_once(client, url, part, progress), f"downloading {url}")
    except Exception as error:
        if is_disk_full(error) or not is_transient(error):
            raise
        host = url.split("/")[2] if "://" in url else url
        raise HubUnreachableError(
            f"{host} did not deliver {_basename(url)} after {model_retry.ATTEMPTS} tries ({short_error(error)}); "
            f"check the network or proxy (HTTPS_PROXY), set HANLP_URL to a reachable HanLP mirror, or bring the "
            f"models in a bundle made with --export-models; run the same command again to resume.") from None
    part.replace(dest)
    return dest


def _fetch_once(client: Any, url: str, part: Path, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and have:
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have:
                return  # already complete
            part.unlink()
            raise Transient("the partial file no longer matches the server's")
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise Transient(f"{url} answered {response.status_code}")
        if response.status_code >= 400:
            raise ModelDownloadError(f"{url} answered {response.status_code}; check HANLP_URL, HANLP_TOK_MODEL "
                                     f"or ASKANY_HANLP_TOK_URL.")
        if response.status_code != 206:
            have = 0  # the server ignored the Range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        received = have
        with part.open("ab" if have else "wb") as out, \
                progress_bar(total, _basename(url), progress, initial=have) as bar:
            for chunk in response.iter_bytes():  # as it arrives: a cut-off keeps what came
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise Transient(f"the connection closed after {received} of {total} bytes")


def _extract_zip(archive: Path, dest: Path, url: str) -> None:
    """Unpack `archive` into `dest` (a single top folder is stripped, as HanLP does); refuse unsafe names."""
    try:
        with zipfile.ZipFile(archive) as zf:
            broken = zf.testzip()
            if broken:
                raise zipfile.BadZipFile(f"{broken} is damaged")
            names = [n for n in zf.namelist() if not n.endswith("/")]
            roots = {n.split("/", 1)[0] for n in names}
            strip = len(roots) == 1 and all("/" in n for n in names)
            for name in names:
                relative = name.split("/", 1)[1] if strip else name
                path = safe_join(dest, relative, archive)
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, path.open("wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except zipfile.BadZipFile as error:
        archive.unlink(missing_ok=True)  # a re-run fetches it again
        raise ModelDownloadError(f"The archive from {url} is damaged ({error}); run the same command again to "
                                 f"fetch it again.") from None
