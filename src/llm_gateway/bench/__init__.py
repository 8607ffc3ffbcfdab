"""The benchmark: prompts -> runner -> records -> stats -> store -> report."""
