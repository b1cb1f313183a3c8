"""Text-embedding models for caption scoring, loaded through sentence-transformers.

A recipe names one: a local folder, a hub id already in the local cache (nothing downloads), or the reserved
``tiny-sentence-embedder``: a 2-layer BERT with random weights and a WordPiece vocabulary trained here, saved with
``save_pretrained`` and loaded back through ``SentenceTransformer`` exactly like a published model. It exercises
the machinery offline (tests, the demo); its scores mean nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

TINY_EMBEDDER = "tiny-sentence-embedder"
_WORDS = Path(__file__).resolve().parents[1] / "data_builders" / "assets" / "words_en.tsv"


def sentence_transformers():
    """The ``sentence_transformers`` module, imported without pulling in wandb when nothing has imported it yet.

    sentence-transformers imports transformers' timm-wrapper configuration, which imports timm when it is installed
    (lmms-eval, in the ``general`` extra, brings it), and timm's training utilities import wandb if they can: about
    2 s of an evaluation process's start, for a logger nothing here uses. While sentence-transformers loads, wandb
    cannot be imported (timm expects that and goes on without it); afterwards ``import wandb`` works as before.
    """
    import sys

    if "sentence_transformers" in sys.modules or "wandb" in sys.modules:
        import sentence_transformers as st

        return st
    sys.modules["wandb"] = None  # an import of wandb raises ImportError while this entry stands
    try:
        import sentence_transformers as st
    finally:
        if "wandb" in sys.modules and sys.modules["wandb"] is None:
            del sys.modules["wandb"]
    return st


def _cache() -> Path:
    """``<cache>/embedders`` under the project's path rule (read when called, so ``--root`` applies)."""
    from recipes.paths import cache_dir

    return cache_dir() / "embedders"


def _wordpiece(folder: Path, vocab_size: int = 2000):
    """A BERT WordPiece tokenizer over the project's word list (uncased), saved into ``folder``.

    The vocabulary is laid out here rather than by the ``tokenizers`` WordPiece trainer, whose choice among tied
    candidates changes from one build to the next: every character (alone and as a ``##`` continuation), then the
    most frequent words, in the list's order. The same files on every machine give the same embeddings.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    words = [line.split("\t")[0].lower() for line in _WORDS.read_text(encoding="utf-8").splitlines()[1:]]
    chars = sorted(set("".join(words)) | set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    seen = set(vocab)
    for w in words:
        if len(vocab) >= vocab_size:
            break
        if w not in seen:
            vocab.append(w)
            seen.add(w)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    fast.save_pretrained(folder)
    return fast


def build_tiny_embedder(out_dir: str | Path, seed: int = 0) -> Path:
    """Build the tiny sentence-transformers model into ``out_dir`` (BERT + mean pooling); returns the folder."""
    import torch
    from transformers import BertConfig, BertModel

    st = sentence_transformers()
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:  # the plain BERT folder: SentenceTransformer.save copies it
        tok = _wordpiece(Path(tmp))
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128)
        BertModel(config).save_pretrained(tmp)
        word = Transformer(tmp, max_seq_length=64)
        pooling = Pooling(word.get_embedding_dimension(), "mean")
        st.SentenceTransformer(modules=[word, pooling], device="cpu").save(str(out))
    return out


# Loaded embedders of this process, by folder or hub id and the state of its files: `eval watch` scores the captions
# of every checkpoint with the same embedder, and loading it again for each cost more than the scoring.
_LOADED: dict[tuple, object] = {}


def load_embedder(name: str, cache_dir: str | Path | None = None):
    """A ``SentenceTransformer`` for ``name`` (the tiny name is built on first use), on CPU unless CUDA is there;
    loaded once per process and shared by every later call with the same model (a rewritten folder is loaded again).

    Raises:
        FileNotFoundError: a hub id that is not in the local cache, with how to provide it.
    """
    if name == TINY_EMBEDDER:
        folder = Path(cache_dir) / name if cache_dir else _cache() / name
        if not (folder / "modules.json").is_file():
            build_tiny_embedder(folder)
        name = str(folder)
    key = (name, _folder_stamp(Path(name)))
    if key not in _LOADED:
        _LOADED[key] = _load(name)
    return _LOADED[key]


def _folder_stamp(folder: Path) -> tuple:
    """(file, size, mtime) of every file of a local model folder; () for a hub id."""
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in folder.rglob("*") if p.is_file()))


def _load(name: str):
    try:
        return sentence_transformers().SentenceTransformer(name, local_files_only=True)
    except OSError as exc:
        raise FileNotFoundError(
            f"text-embedding model {name!r} is neither a local folder nor in the Hugging Face cache. Download it on "
            f"a machine with network (`huggingface-cli download {name}`) and copy the cache, or name a folder; "
            f"tests and the demo use {TINY_EMBEDDER!r}.") from exc
