"""Recovery after pruning: LoRA fine-tuning with a sparsity-preserving merge."""
