"""The simulated model library: a few real Ollama models with realistic sizes, details and H200 speeds.

`ModelSpec` is what a model is made of (weights, architecture, speeds); `InstalledModel` is one entry of the
local library (a catalogue model, or one made with /api/create or /api/copy) with its own parameters, system
prompt and template. The helpers at the bottom render what /api/show prints, in Ollama's formats.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
BLOB_DIR = "/usr/share/ollama/.ollama/models/blobs"

QWEN_TEMPLATE = """{{- if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}{{ end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

QWEN3_TEMPLATE = QWEN_TEMPLATE.replace(
    "{{ if .Content }}{{ .Content }}{{ end }}",
    "{{ if and $.IsThinkSet (and $last .Thinking) -}}\n<think>\n{{ .Thinking }}\n</think>\n{{ end -}}\n"
    "{{ if .Content }}{{ .Content }}{{ end }}",
)

LLAMA32_TEMPLATE = """<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023

{{ if .System }}{{ .System }}
{{- end }}<|eot_id|>
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- end }}
{{- end }}"""

EMBED_TEMPLATE = "{{ .Prompt }}"

APACHE_LICENSE = """                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"""

LLAMA32_LICENSE = """LLAMA 3.2 COMMUNITY LICENSE AGREEMENT
Llama 3.2 Version Release Date: September 25, 2024

"Agreement" means the terms and conditions for use, reproduction, distribution
and modification of the Llama Materials set forth herein."""

# GGUF general.file_type codes.
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_S": 14, "Q4_K_M": 15}


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: weights, architecture facts and how fast it runs on one H200 (single stream)."""

    name: str
    architecture: str
    families: tuple[str, ...]
    basename: str
    parameter_size: str
    parameter_count: int
    quantization_level: str
    size_bytes: int
    context_length: int
    embedding_length: int
    block_count: int
    head_count: int
    head_count_kv: int
    head_dim: int
    feed_forward_length: int
    rope_freq_base: float
    tokenizer_model: str
    decode_tok_s: float
    prefill_tok_s: float
    load_s: float
    capabilities: tuple[str, ...]
    template: str
    license: str
    parameters: tuple[tuple[str, Any], ...] = ()
    modified_at: str = "2026-06-01T09:00:00Z"

    @property
    def family(self) -> str:
        return self.families[0]

    @property
    def embedding_only(self) -> bool:
        return "completion" not in self.capabilities

    def kv_bytes_per_token(self) -> int:
        """f16 K and V for every layer."""
        return 2 * self.block_count * self.head_count_kv * self.head_dim * 2

    def runtime_bytes(self, num_ctx: int, num_parallel: int) -> int:
        """Memory of a loaded runner: weights, KV cache for every parallel slot, and the compute graph."""
        kv = self.kv_bytes_per_token() * num_ctx * num_parallel
        graph = int(0.25 * GIB) + num_ctx * num_parallel * 2 * self.embedding_length // 8
        return self.size_bytes + kv + graph


CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="qwen3:32b",
        architecture="qwen3",
        families=("qwen3",),
        basename="Qwen3",
        parameter_size="32.8B",
        parameter_count=32_762_123_264,
        quantization_level="Q4_K_M",
        size_bytes=20_201_253_588,
        context_length=40960,
        embedding_length=5120,
        block_count=64,
        head_count=64,
        head_count_kv=8,
        head_dim=128,
        feed_forward_length=25600,
        rope_freq_base=1_000_000.0,
        tokenizer_model="gpt2",
        decode_tok_s=45.0,
        prefill_tok_s=2600.0,
        load_s=6.0,
        capabilities=("completion", "tools", "thinking"),
        template=QWEN3_TEMPLATE,
        license=APACHE_LICENSE,
        parameters=(
            ("repeat_penalty", 1),
            ("stop", ["<|im_start|>", "<|im_end|>"]),
            ("temperature", 0.6),
            ("top_k", 20),
            ("top_p", 0.95),
        ),
        modified_at="2026-05-12T08:41:17.402193511Z",
    ),
    ModelSpec(
        name="qwen3:8b",
        architecture="qwen3",
        families=("qwen3",),
        basename="Qwen3",
        parameter_size="8.2B",
        parameter_count=8_190_735_360,
        quantization_level="Q4_K_M",
        size_bytes=5_225_376_047,
        context_length=40960,
        embedding_length=4096,
        block_count=36,
        head_count=32,
        head_count_kv=8,
        head_dim=128,
        feed_forward_length=12288,
        rope_freq_base=1_000_000.0,
        tokenizer_model="gpt2",
        decode_tok_s=140.0,
        prefill_tok_s=9000.0,
        load_s=2.5,
        capabilities=("completion", "tools", "thinking"),
        template=QWEN3_TEMPLATE,
        license=APACHE_LICENSE,
        parameters=(
            ("repeat_penalty", 1),
            ("stop", ["<|im_start|>", "<|im_end|>"]),
            ("temperature", 0.6),
            ("top_k", 20),
            ("top_p", 0.95),
        ),
        modified_at="2026-05-12T08:22:03.118820645Z",
    ),
    ModelSpec(
        name="qwen2:7b",
        architecture="qwen2",
        families=("qwen2",),
        basename="Qwen2",
        parameter_size="7.6B",
        parameter_count=7_615_616_512,
        quantization_level="Q4_0",
        size_bytes=4_431_400_262,
        context_length=32768,
        embedding_length=3584,
        block_count=28,
        head_count=28,
        head_count_kv=4,
        head_dim=128,
        feed_forward_length=18944,
        rope_freq_base=1_000_000.0,
        tokenizer_model="gpt2",
        decode_tok_s=150.0,
        prefill_tok_s=9500.0,
        load_s=2.2,
        capabilities=("completion", "tools"),
        template=QWEN_TEMPLATE,
        license=APACHE_LICENSE,
        parameters=(("stop", ["<|im_start|>", "<|im_end|>"]),),
        modified_at="2026-03-03T17:05:44.934017822Z",
    ),
    ModelSpec(
        name="llama3.2:3b",
        architecture="llama",
        families=("llama",),
        basename="Llama-3.2",
        parameter_size="3.2B",
        parameter_count=3_212_749_888,
        quantization_level="Q4_K_M",
        size_bytes=2_019_393_189,
        context_length=131072,
        embedding_length=3072,
        block_count=28,
        head_count=24,
        head_count_kv=8,
        head_dim=128,
        feed_forward_length=8192,
        rope_freq_base=500_000.0,
        tokenizer_model="gpt2",
        decode_tok_s=250.0,
        prefill_tok_s=16000.0,
        load_s=1.5,
        capabilities=("completion", "tools"),
        template=LLAMA32_TEMPLATE,
        license=LLAMA32_LICENSE,
        parameters=(("stop", ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),),
        modified_at="2026-02-18T11:30:09.551364027Z",
    ),
    ModelSpec(
        name="nomic-embed-text:latest",
        architecture="nomic-bert",
        families=("nomic-bert",),
        basename="nomic-embed-text-v1.5",
        parameter_size="137M",
        parameter_count=136_727_040,
        quantization_level="F16",
        size_bytes=274_302_450,
        context_length=2048,
        embedding_length=768,
        block_count=12,
        head_count=12,
        head_count_kv=12,
        head_dim=64,
        feed_forward_length=3072,
        rope_freq_base=1000.0,
        tokenizer_model="bert",
        decode_tok_s=0.0,
        prefill_tok_s=60000.0,
        load_s=0.5,
        capabilities=("embedding",),
        template=EMBED_TEMPLATE,
        license=APACHE_LICENSE,
        parameters=(("num_ctx", 8192),),
        modified_at="2026-01-07T14:12:55.20871433Z",
    ),
)


def canonical_name(name: str) -> str:
    """Ollama's short form: a missing tag means ":latest"; the default registry and library prefixes are dropped."""
    name = name.strip()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    last = name.rsplit("/", 1)[-1]
    if name and ":" not in last:
        name += ":latest"
    return name


def is_valid_name(name: str) -> bool:
    if not name or len(name) > 350:
        return False
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/")
    return all(ch in allowed for ch in name) and not name.startswith((":", "/", ".", "-"))


def catalogue_by_name() -> dict[str, ModelSpec]:
    return {spec.name: spec for spec in CATALOGUE}


def sha256_hex(*parts: Any) -> str:
    data = "\x1f".join(str(p) for p in parts).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass
class InstalledModel:
    """One model of the local library."""

    name: str
    spec: ModelSpec
    parameters: dict[str, Any]
    system: str = ""
    template: str = ""
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    modified_at: str = ""
    parent_model: str = ""
    quantization_level: str = ""

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> InstalledModel:
        return cls(
            name=spec.name,
            spec=spec,
            parameters={key: (list(value) if isinstance(value, list) else value) for key, value in spec.parameters},
            template=spec.template,
            license=[spec.license] if spec.license else [],
            modified_at=spec.modified_at,
            quantization_level=spec.quantization_level,
        )

    def derive(self, name: str, modified_at: str) -> InstalledModel:
        return replace(
            self,
            name=name,
            parameters=json.loads(json.dumps(self.parameters)),
            license=list(self.license),
            messages=[dict(m) for m in self.messages],
            modified_at=modified_at,
        )

    @property
    def capabilities(self) -> list[str]:
        return list(self.spec.capabilities)

    @property
    def weights_digest(self) -> str:
        return sha256_hex("weights", self.spec.name, self.quantization_level)

    def layer_digests(self) -> list[tuple[str, str]]:
        """(media type, sha256 hex) of every layer of the manifest, weights first."""
        layers = [("model", self.weights_digest)]
        if self.template:
            layers.append(("template", sha256_hex("template", self.template)))
        if self.system:
            layers.append(("system", sha256_hex("system", self.system)))
        for text in self.license:
            layers.append(("license", sha256_hex("license", text)))
        if self.parameters:
            layers.append(("params", sha256_hex("params", json.dumps(self.parameters, sort_keys=True))))
        if self.messages:
            layers.append(("messages", sha256_hex("messages", json.dumps(self.messages, sort_keys=True))))
        return layers

    @property
    def digest(self) -> str:
        """The manifest digest, as /api/tags shows it (bare hex)."""
        return sha256_hex("manifest", *[digest for _, digest in self.layer_digests()])

    @property
    def size_bytes(self) -> int:
        extra = sum(len(text.encode()) for text in (self.template, self.system, *self.license))
        return self.spec.size_bytes + extra + len(json.dumps(self.parameters))

    def details(self, include_parent: bool = True) -> dict[str, Any]:
        return {
            "parent_model": self.parent_model if include_parent else "",
            "format": "gguf",
            "family": self.spec.family,
            "families": list(self.spec.families),
            "parameter_size": self.spec.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def model_info(self) -> dict[str, Any]:
        spec = self.spec
        arch = spec.architecture
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.basename": spec.basename,
            "general.file_type": FILE_TYPES.get(self.quantization_level, 15),
            "general.parameter_count": spec.parameter_count,
            "general.quantization_version": 2,
            "general.size_label": spec.parameter_size,
            "general.type": "model",
            f"{arch}.attention.head_count": spec.head_count,
            f"{arch}.attention.head_count_kv": spec.head_count_kv,
            f"{arch}.attention.key_length": spec.head_dim,
            f"{arch}.attention.value_length": spec.head_dim,
            f"{arch}.block_count": spec.block_count,
            f"{arch}.context_length": spec.context_length,
            f"{arch}.embedding_length": spec.embedding_length,
            f"{arch}.feed_forward_length": spec.feed_forward_length,
            f"{arch}.rope.freq_base": spec.rope_freq_base,
            "tokenizer.ggml.model": spec.tokenizer_model,
            "tokenizer.ggml.merges": [],
            "tokenizer.ggml.token_type": [],
            "tokenizer.ggml.tokens": [],
        }
        if spec.embedding_only:
            info[f"{arch}.pooling_type"] = 1
        return dict(sorted(info.items()))

    def show_parameters(self) -> str:
        return format_show_parameters(self.parameters)

    def modelfile(self) -> str:
        lines = [
            '# Modelfile generated by "ollama show"',
            "# To build a new Modelfile based on this, replace FROM with:",
            f"# FROM {self.name}",
            "",
            f"FROM {BLOB_DIR}/sha256-{self.weights_digest}",
        ]
        if self.template:
            lines.append(f"TEMPLATE {modelfile_quote(self.template)}")
        if self.system:
            lines.append(f"SYSTEM {modelfile_quote(self.system)}")
        for key, value in sorted(self.parameters.items()):
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {key} {modelfile_quote(modelfile_value(item))}")
        for message in self.messages:
            lines.append(f"MESSAGE {message.get('role', '')} {modelfile_quote(message.get('content', ''))}")
        for text in self.license:
            lines.append(f'LICENSE """{text}"""')
        return "\n".join(lines) + "\n"


def format_show_parameters(parameters: dict[str, Any]) -> str:
    """/api/show "parameters": one line per value, the key padded to 30, the value as Go's %#v prints it."""
    lines = []
    for key, value in sorted(parameters.items()):
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {go_value(item)}")
    return "\n".join(lines)


def go_value(value: Any) -> str:
    """A JSON-decoded value as Go's fmt %#v renders it (strings quoted, numbers shortest, bools bare)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(float(value))
    if isinstance(value, str):
        return go_quote(value)
    if value is None:
        return "<nil>"
    return go_quote(json.dumps(value))


def go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64) with Go's %v exponent thresholds."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        exp = int(exponent)
        if -4 <= exp < 21:
            return format(value, "f").rstrip("0").rstrip(".")
        return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return text


def go_quote(text: str) -> str:
    """strconv.Quote: double quotes, Go escapes, printable Unicode kept as is."""
    escapes = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
        "\\": "\\\\",
        '"': '\\"',
    }
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def modelfile_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(float(value))
    return str(value)


def modelfile_quote(text: str) -> str:
    """How `ollama show --modelfile` writes a value: quoted only when a newline or edge spaces require it."""
    if "\n" in text or text.startswith(" ") or text.endswith(" "):
        if '"' in text:
            return '"""' + text + '"""'
        return '"' + text + '"'
    return text
