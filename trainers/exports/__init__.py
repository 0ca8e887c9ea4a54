"""What a training run writes beside the framework files: the TorchServe `.mar`
(`archive.py`) and the `torch.export` programs (`torch_export.py`)."""
