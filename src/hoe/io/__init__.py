"""Reading and writing artifacts: safetensors checkpoints, PEFT adapters, atomic output folders."""
