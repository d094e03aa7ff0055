"""The lab's measures on any Hugging Face ``transformers`` model saved in a folder.

``model.py`` loads the model and its tokenizer (``from_pretrained(PATH)``, nothing downloaded)
and wraps it as a module of the lab's protocols (``forward(ids)`` -> logits, ``embed`` /
``forward_embedded``); ``data.py`` reads lines or TSV pairs and tokenizes them into one padded
tensor; ``measures.py`` runs token-wise sensitivity, weight-noise sharpness and LayerNorm
blow-up through the lab's measure functions, batched with progress. Needs the ``hf`` extra.
"""

MEASURES = ("tokenwise", "weight-noise", "blowup", "all")  # what `biaslab measure --model-dir` takes
