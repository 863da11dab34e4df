r"""The reasoning stage of MLLMRec: image descriptions (Prompt1), the item
multimodal description :math:`D_m^i`, user preferences from TRAINING items
(Prompt2), their quality (:mod:`~mllmrec_pyg.llm.quality`) and their
sentence embeddings; every generation goes through a content-addressed
cache."""
from .backends import (
    BACKENDS,
    DECODINGS,
    BackendError,
    Generation,
    GenerationBackend,
    GenerationRequest,
    HuggingFaceBackend,
    ImageStatisticsDescriber,
    OpenAIHTTPBackend,
    ServerUnreachableError,
    SmolLM2Backend,
    make_backend,
    smollm2_gguf_path,
)
from .cache import (
    GenerationCache,
    default_cache_path,
    generation_key,
    generations_saved,
)
from .describe import DescribeRun, ImageUnavailable, describe_items, load_image_bytes
from .encode import (
    DEFAULT_ENCODER,
    TextEncoder,
    default_encoder_tokenizer,
    default_token_budget,
)
from .merge import MergeConflict, MergeReport, merge_caches
from .prefer import (
    FullHistoryLeakWarning,
    HistoryPolicy,
    PreferenceRun,
    build_preference_prompts,
    generate_preferences,
    sample_users,
)
from .prompts import (
    PREFERENCE_SYSTEM_PROMPT,
    PROMPT1,
    PROMPT2,
    DescriptionPrompt,
    PreferencePrompt,
)
from .quality import (
    BOILERPLATE_OPENINGS,
    RunawayCut,
    cut_runaway,
    distinct_n,
    max_ngram_repeats,
    quality_report,
    starts_with_boilerplate,
)
from .redact import redact_secrets
from .runner import RunResult, run_requests, run_summary
from .shard import Shard, parse_shard, shard_of
from .text import (
    ItemDescriptions,
    WordTokenizer,
    compose_item_descriptions,
    prompt_item_descriptions,
)

__all__ = [
    'BACKENDS',
    'BOILERPLATE_OPENINGS',
    'BackendError',
    'DECODINGS',
    'DEFAULT_ENCODER',
    'DescribeRun',
    'DescriptionPrompt',
    'FullHistoryLeakWarning',
    'Generation',
    'GenerationBackend',
    'GenerationCache',
    'GenerationRequest',
    'HistoryPolicy',
    'HuggingFaceBackend',
    'ImageStatisticsDescriber',
    'ImageUnavailable',
    'ItemDescriptions',
    'MergeConflict',
    'MergeReport',
    'OpenAIHTTPBackend',
    'PREFERENCE_SYSTEM_PROMPT',
    'PROMPT1',
    'PROMPT2',
    'PreferencePrompt',
    'PreferenceRun',
    'RunResult',
    'RunawayCut',
    'ServerUnreachableError',
    'Shard',
    'SmolLM2Backend',
    'TextEncoder',
    'WordTokenizer',
    'build_preference_prompts',
    'compose_item_descriptions',
    'cut_runaway',
    'default_cache_path',
    'default_encoder_tokenizer',
    'default_token_budget',
    'describe_items',
    'distinct_n',
    'generate_preferences',
    'generation_key',
    'generations_saved',
    'load_image_bytes',
    'make_backend',
    'max_ngram_repeats',
    'merge_caches',
    'parse_shard',
    'prompt_item_descriptions',
    'quality_report',
    'redact_secrets',
    'run_requests',
    'run_summary',
    'sample_users',
    'shard_of',
    'smollm2_gguf_path',
    'starts_with_boilerplate',
]
