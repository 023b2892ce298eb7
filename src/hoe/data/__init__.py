"""Data `hoe` reads: prompt sets (JSONL)."""

from hoe.data.prompts import Prompt, load_prompts

__all__ = ["Prompt", "load_prompts"]
