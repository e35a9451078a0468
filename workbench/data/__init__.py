"""Data: corpora (`corpus`: SQuAD, JSONL, folder, BEIR) and eval sets (`evalset`: SQuAD, JSONL, CSV, BEIR), each with a content digest. Synthetic eval sets and human labels belong here too."""
