"""The CLIP BPE tokenizer (vocab.json + merges.txt) rebuilt offline from open-clip's vocabulary.

Why: Stable Diffusion's text encoders use OpenAI CLIP's tokenizer. Hub downloads are not
possible on an offline machine, but the ``open-clip-torch`` PyPI package ships CLIP's
``bpe_simple_vocab_16e6.txt.gz``. Rebuilding ``vocab.json`` / ``merges.txt`` from it with
CLIP's own construction (256 byte tokens, the same with ``</w>``, the first 48,894 merges,
then ``<|startoftext|>`` and ``<|endoftext|>``: 49,408 tokens) gives a
``transformers.CLIPTokenizer`` with exactly CLIP's token ids. Tests and the benchmark use
it to build SD-architecture pipelines with random weights; users can use it to complete a
configuration folder for a single-file checkpoint (``generate.sd.config``).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from synthmix.core.atomic import write_text
from synthmix.core.errors import MissingAssetError

N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def bpe_vocab_file() -> Path:
    """The ``bpe_simple_vocab_16e6.txt.gz`` shipped by open-clip-torch."""
    try:
        import open_clip
    except ImportError as exc:
        raise MissingAssetError(
            "the CLIP vocabulary needs the open-clip-torch package: pip install open-clip-torch"
        ) from exc
    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing: reinstall open-clip-torch")
    return path


def build_clip_tokenizer_files(out_dir: str | os.PathLike, bpe_path: str | os.PathLike | None = None) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and tokenizer configs of CLIP's tokenizer to ``out_dir``."""
    out_dir = Path(out_dir)
    with gzip.open(bpe_path or bpe_vocab_file(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : N_MERGES + 1]
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    write_text(out_dir / "vocab.json", json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    write_text(out_dir / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    write_text(out_dir / "tokenizer_config.json", json.dumps(config, indent=2))
    write_text(
        out_dir / "special_tokens_map.json",
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2),
    )
    return out_dir


def clip_tokenizer(cache_dir: str | os.PathLike | None = None, pad_token: str = EOS):
    """A ``transformers.CLIPTokenizer`` with CLIP's vocabulary, files built once into ``cache_dir``.

    ``pad_token``: SD 1.x and SDXL's first tokenizer pad with ``<|endoftext|>``; SDXL's
    second (OpenCLIP bigG) tokenizer pads with ``"!"``.
    """
    from transformers import CLIPTokenizer

    if cache_dir is None:
        cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "synthmix" / "clip-tokenizer"
    cache_dir = Path(cache_dir)
    if not (cache_dir / "vocab.json").is_file() or not (cache_dir / "merges.txt").is_file():
        build_clip_tokenizer_files(cache_dir)
    return CLIPTokenizer(
        str(cache_dir / "vocab.json"), str(cache_dir / "merges.txt"), pad_token=pad_token, model_max_length=77
    )
