"""Data: the corpus and eval-set loaders (SQuAD, JSONL, folder, CSV, BEIR), each with a content digest. Synthetic eval sets and human labels belong here too."""
