"""Where candidates come from: an LLM (with logprobs), built-in templates, or a replay."""
