r"""The reasoning stage of MLLMRec: image descriptions (Prompt1), the item
multimodal description :math:`D_m^i`, user preferences from TRAINING items
(Prompt2), and their sentence embeddings; every generation goes through a
content-addressed cache."""
from .backends import (
    BACKENDS,
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
from .prefer import (
    FullHistoryLeakWarning,
    HistoryPolicy,
    PreferenceRun,
    build_preference_prompts,
    generate_preferences,
)
from .prompts import PROMPT1, PROMPT2, DescriptionPrompt, PreferencePrompt
from .redact import redact_secrets
from .runner import RunResult, run_requests, run_summary
from .text import (
    ItemDescriptions,
    WordTokenizer,
    compose_item_descriptions,
    prompt_item_descriptions,
)

__all__ = [
    'BACKENDS',
    'BackendError',
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
    'OpenAIHTTPBackend',
    'PROMPT1',
    'PROMPT2',
    'PreferencePrompt',
    'PreferenceRun',
    'RunResult',
    'ServerUnreachableError',
    'SmolLM2Backend',
    'TextEncoder',
    'WordTokenizer',
    'build_preference_prompts',
    'compose_item_descriptions',
    'default_cache_path',
    'default_encoder_tokenizer',
    'default_token_budget',
    'describe_items',
    'generate_preferences',
    'generation_key',
    'generations_saved',
    'load_image_bytes',
    'make_backend',
    'prompt_item_descriptions',
    'redact_secrets',
    'run_requests',
    'run_summary',
    'smollm2_gguf_path',
]
