"""The benchmark: prompts -> runner -> records -> stats -> store -> report."""

import csv

# Python's csv refuses fields over 128 KiB by default. A prompt (in a CSV prompt file, or in a
# run's results) may be longer, and a stored run must always be readable back.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))
