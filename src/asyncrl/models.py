"""Loading local Hugging Face causal LMs, plus the untrained built-in models (tiny dense Qwen2, tiny
GLM-4.5-style and Qwen3 MoEs) so everything runs offline. The ground floor: it knows model directories
and builds untrained models, never trains one (trained built-in models are recipes in
asyncrl.builtin_models)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)
from transformers.utils import logging as hf_logging

from asyncrl.errors import UserError
from asyncrl.model_cache import UNTRAINED_VERSIONS, cached_model_dir

# Loading a small model is instant; transformers' per-load progress bars only clutter process logs.
hf_logging.disable_progress_bar()

TINY_MODEL_NAME, TINY_MOE_NAME, TINY_QWEN3_MOE_NAME = UNTRAINED_VERSIONS
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtypes a model may be loaded in, by their config names (`model.dtype`)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's chat template without its default system prompt, so a plain turn renders as
# `<|im_start|>{role}\n{content}<|im_end|>\n`.
CHAT_TEMPLATE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
    {{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments ' }}
    {{- 'within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": ' }}
    {{- '<args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
    {%- elif not (tools and loop.first and message.role == 'system') %}
        {{- '<|im_start|>' + message.role + '\n' + (message.content or '') }}
        {%- for call in message.tool_calls or [] %}
            {%- set call = call.function if call.function is defined else call %}
            {%- if message.content or not loop.first %}{{- '\n' }}{%- endif %}
            {{- '<tool_call>\n{"name": "' + call.name + '", "arguments": ' }}
            {%- if call.arguments is string %}{{- call.arguments }}
            {%- else %}{{- call.arguments | tojson }}{%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
""".strip()


class ModelLoadError(UserError):
    """A model or tokenizer could not be loaded; the message says what to do about it."""


def resolve_model_path(path: str) -> Path:
    """An untrained built-in name (`tiny`, `tiny-moe`, `tiny-qwen3-moe`) to its cached dir, built on first
    use; any other `path` checked to be a usable local HF model dir. The other built-in names
    (`tiny-reverse-text`, ...) are recipes that train: `asyncrl.builtin_models` resolves them to dirs
    before any process starts."""
    if path in UNTRAINED_BUILDERS:
        return untrained_model_dir(path)
    model_dir = Path(path).expanduser().absolute()
    if not model_dir.exists():
        raise ModelLoadError(
            f"model path '{path}' does not exist; pass a local Hugging Face model directory "
            f"(hub downloads are not supported: fetch it with `hf download` first) or '{TINY_MODEL_NAME}'; "
            "the asyncrl commands also take the built-in names, which "
            "asyncrl.builtin_models.resolve_model_name turns into directories"
        )
    if not model_dir.is_dir():
        raise ModelLoadError(f"model path '{path}' is a file, not a directory; pass the directory holding it")
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"model dir '{path}' has no config.json; is it a Hugging Face model directory?")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise ModelLoadError(
            f"model dir '{path}' has no weights (*.safetensors or pytorch_model*.bin); "
            "the download or save may be incomplete"
        )
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"model dir '{path}' has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
            "save the tokenizer next to the model"
        )
    return model_dir


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model dir (or of `tiny`)."""
    model_dir = resolve_model_path(path)
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as e:
        raise ModelLoadError(f"could not load the tokenizer from '{model_dir}': {_first_line(e)}") from e


def load_model(path: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> PreTrainedModel:
    """Load a causal LM in eval mode with SDPA attention."""
    model_dir = resolve_model_path(path)
    hint = "check that config.json and the weights belong to a supported causal LM"
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype, attn_implementation="sdpa", output_loading_info=True
        )
    except SafetensorError as e:
        raise ModelLoadError(
            f"the weights in '{model_dir}' are unreadable ({_first_line(e)}): a truncated or corrupt "
            "*.safetensors file; copy or publish the model dir again"
        ) from e
    except (OSError, ValueError, KeyError, TypeError, ImportError, RuntimeError) as e:
        raise ModelLoadError(
            f"could not load a causal LM from '{model_dir}': {_first_line(e)}; {hint}"
        ) from e
    # transformers only warns about missing weights and leaves them randomly initialised.
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise ModelLoadError(
            f"the weights in '{model_dir}' lack {len(info['missing_keys'])} tensors ({missing}, ...); {hint}"
        )
    return model.to(device).eval()


def eos_token_ids(model_dir: str | Path, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The ids that end a completion: the generation config's EOS ids, else the tokenizer's."""
    try:
        eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:
        eos = None
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    return tuple(ids)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def byte_symbols() -> list[str]:
    """The GPT-2 byte-to-unicode symbols, index = byte value."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)}
    printable |= set(range(ord("®"), ord("ÿ") + 1))
    spare = iter(range(256, 512))
    symbols = [chr(b) if b in printable else chr(next(spare)) for b in range(256)]
    if set(symbols) != set(pre_tokenizers.ByteLevel.alphabet()):
        raise RuntimeError("tokenizers' ByteLevel alphabet is not the GPT-2 byte alphabet")
    return symbols


def _build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {symbol: i for i, symbol in enumerate(byte_symbols())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # transformers 5 loads every qwen2 dir with Qwen2Tokenizer, which rebuilds this exact pipeline
    # (NFC, Qwen's split regex, byte-level) and ignores the one in tokenizer.json; mirroring it keeps
    # AutoTokenizer, raw `tokenizers` and vLLM in agreement. Splitting never drops characters, so any
    # NFC string round-trips.
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = (ENDOFTEXT, IM_START, IM_END)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )


def _tiny_config_kwargs(tokenizer: PreTrainedTokenizerFast) -> dict:
    """What every built-in model shares: the byte-level vocabulary, its special ids, a 2k window."""
    pad_id, eos_id = tokenizer.convert_tokens_to_ids([ENDOFTEXT, IM_END])
    return {
        "vocab_size": 272,  # 259 used, padded to a multiple of 16
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "dtype": torch.float32,
    }


def _write_built_in(
    model_class: type[PreTrainedModel], config: PretrainedConfig, out_dir: Path, seed: int
) -> Path:
    """Initialise `model_class(config)` from `seed` and write it with the byte-level tokenizer."""
    out_dir = Path(out_dir)
    tokenizer = _build_tiny_tokenizer()
    # fork_rng keeps the caller's global RNG stream untouched by the seeded init.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).to(torch.float32)
    # Stop on <|endoftext|> too, as Qwen2.5's generation_config does.
    model.generation_config = GenerationConfig(
        eos_token_id=[config.eos_token_id, config.pad_token_id], pad_token_id=config.pad_token_id
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # The saved class name would be the generic "TokenizersBackend", which transformers 4 (e.g. inside
    # vLLM) does not know; the Qwen2 name loads this tokenizer.json unchanged in both major versions.
    config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return out_dir


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny Qwen2 model and its tokenizer to `out_dir`; same seed, same bytes."""
    config = Qwen2Config(
        **_tiny_config_kwargs(_build_tiny_tokenizer()),
        intermediate_size=384,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    return _write_built_in(Qwen2ForCausalLM, config, out_dir, seed)


def build_tiny_moe_model(out_dir: Path, seed: int = 0) -> Path:
    """Write `tiny-moe`, a GLM-4.5-shaped MoE (the INTELLECT-3 family) at tiny's width: a dense first
    layer, then 3 MoE layers of 8 routed experts (top-2, sigmoid scores with a correction bias) plus a
    shared expert; partial rotary and attention biases as GLM-4.5 has them. A token uses as much MLP
    width as in `tiny` (2 experts + the shared one, 128 each, against 384): 1.75M parameters, 0.86M
    active."""
    config = Glm4MoeConfig(
        **_tiny_config_kwargs(_build_tiny_tokenizer()),
        head_dim=32,
        intermediate_size=384,
        moe_intermediate_size=128,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        first_k_dense_replace=1,
        norm_topk_prob=True,
        routed_scaling_factor=1.0,
        attention_bias=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    )
    return _write_built_in(Glm4MoeForCausalLM, config, out_dir, seed)


def build_tiny_qwen3_moe_model(out_dir: Path, seed: int = 0) -> Path:
    """Write `tiny-qwen3-moe`, a Qwen3-MoE at tiny's width: 4 MoE layers of 8 experts (top-2, softmax
    scores, renormalised), QK norms, no shared expert; 2 experts of 192 give a token tiny's MLP width
    (384)."""
    config = Qwen3MoeConfig(
        **_tiny_config_kwargs(_build_tiny_tokenizer()),
        head_dim=32,
        intermediate_size=384,
        moe_intermediate_size=192,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    return _write_built_in(Qwen3MoeForCausalLM, config, out_dir, seed)


UNTRAINED_BUILDERS: dict[str, Callable[[Path], Path]] = {
    TINY_MODEL_NAME: build_tiny_model,
    TINY_MOE_NAME: build_tiny_moe_model,
    TINY_QWEN3_MOE_NAME: build_tiny_qwen3_moe_model,
}
"""What writes each untrained built-in model's dir."""


def untrained_model_dir(name: str) -> Path:
    """The cached dir of the untrained built-in model `name`, built on first use; safe against concurrent
    builders."""
    return cached_model_dir(UNTRAINED_VERSIONS[name], UNTRAINED_BUILDERS[name])


def tiny_model_dir() -> Path:
    """The cached tiny model dir, built on first use."""
    return untrained_model_dir(TINY_MODEL_NAME)
