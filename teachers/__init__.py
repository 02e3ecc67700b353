"""Teachers: load a BERT checkpoint, fine-tune it on a task once (cached), expose its outputs."""
