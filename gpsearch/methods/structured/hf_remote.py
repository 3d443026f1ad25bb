"""Hugging Face loader for a structurally pruned model whose decoder layers have different widths.

This file is copied, as is apart from the ``BASE`` line, next to the weights of such a model (as
``gpsearch_pruned_modeling.py``) and named in ``config.json``'s ``auto_map``, so that
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` rebuilds it without gpsearch
installed. It builds the stock model class ``BASE`` from the config, then replaces every linear
listed in ``config.gpsearch_linear_shapes`` ({module name: [out, in, has_bias]}) by one of that
shape, before the weights are loaded. Models whose layers all keep one shape are saved with a plain
config instead and need none of this.
"""

import transformers
from torch import nn

BASE = "LlamaForCausalLM"


class GpsearchPrunedForCausalLM(getattr(transformers, BASE)):
    def __init__(self, config):
        super().__init__(config)
        shapes = getattr(config, "gpsearch_linear_shapes", None) or {}
        for name, (out_features, in_features, bias) in shapes.items():
            parent_name, _, child = name.rpartition(".")
            parent = self.get_submodule(parent_name)
            old = getattr(parent, child)
            setattr(parent, child, nn.Linear(in_features, out_features, bias=bool(bias),
                                             dtype=old.weight.dtype, device=old.weight.device))
