"""The parameter-group vocabulary a config trains by. `models/` assigns every parameter of a model to
exactly one of these names (from the module structure); this module only knows the names, so the
config can validate and canonicalise `train` without knowing any model."""
from __future__ import annotations

# Groups a backbone can own. `unused` (the token-embedding table FPT bypasses) is never trained.
BACKBONE_GROUPS = ("layernorm", "positions", "attention", "feedforward", "recurrent", "token_type", "unused")
# Groups a user can train; `full` means every group except the unused token-embedding table.
TRAINABLE_GROUPS = ("input", "output") + tuple(g for g in BACKBONE_GROUPS if g != "unused")
# `attention_last`: the attention of the last block only (paper Table 14), a slice of `attention`.
GROUP_CHOICES = TRAINABLE_GROUPS + ("attention_last", "full")
FPT_GROUPS = ("input", "output", "layernorm", "positions")


def parse_backbone_groups(groups) -> tuple[str, ...]:
    """'attention,layernorm' or a sequence of a backbone's group names -> validated tuple in canonical
    order (what `keep` names: groups of the backbone itself, never the new input and output layers)."""
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    unknown = [g for g in groups if g not in BACKBONE_GROUPS or g == "unused"]
    if unknown or not groups:
        raise ValueError(f"backbone group(s) {list(unknown or groups)}: name one or more of "
                         f"{', '.join(g for g in BACKBONE_GROUPS if g != 'unused')}")
    return tuple(g for g in BACKBONE_GROUPS if g in groups)


def parse_groups(groups) -> tuple[str, ...]:
    """'input,output' or a sequence of names -> validated tuple in canonical order."""
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUP_CHOICES]
    if unknown:
        raise ValueError(f"unknown parameter group(s) {unknown}; choose from {', '.join(GROUP_CHOICES)}")
    if "full" in groups:
        return TRAINABLE_GROUPS
    out = tuple(g for g in TRAINABLE_GROUPS if g in groups)
    # the last block's attention is part of `attention`; naming both means all of it
    return out + (("attention_last",) if "attention_last" in groups and "attention" not in groups else ())
