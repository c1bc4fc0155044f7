"""Attention maps, one vertical feature (notebook 04 and its explorer): `measure` trains or loads the two
models and measures the maps (alignment tables, verdicts), `figures` draws them, `explorer` is the
JupyterLab widget. `from fptlib.study import attention` gives all three's public names."""
from .explorer import (
    AttentionExplorer,
)
from .figures import (
    all_layers_figure,
    draw_map,
    heads_figure,
    layer_figure,
    layers_figure,
    marked_cells,
    token_labels,
)
from .measure import (
    FIGURE_KEYS,
    FIGURE_PREFIX,
    TASKS,
    Analysis,
    analyse,
    analyse_cached,
    attention_batch,
    attention_config,
    attention_maps,
    cache_paths,
    cached_runs,
    eval_examples,
    frozen_digest,
    is_causal,
    layer_table,
    memory_alignment,
    memory_verdict,
    query_patterns,
    train_in_process,
    trainable_state,
    trained_model,
    untrained_model,
    xor_alignment,
    xor_verdict,
)

__all__ = ['AttentionExplorer', 'layer_figure', 'heads_figure', 'all_layers_figure', 'layers_figure', 'token_labels',
           'draw_map', 'marked_cells', 'TASKS', 'FIGURE_PREFIX', 'FIGURE_KEYS', 'attention_config', 'cache_paths',
           'frozen_digest', 'trainable_state', 'train_in_process', 'trained_model', 'untrained_model',
           'attention_batch', 'attention_maps', 'is_causal', 'xor_alignment', 'query_patterns', 'memory_alignment',
           'Analysis', 'eval_examples', 'layer_table', 'analyse', 'xor_verdict', 'memory_verdict', 'cached_runs',
           'analyse_cached']
