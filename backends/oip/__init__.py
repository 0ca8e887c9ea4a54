"""The bundled Open Inference Protocol server: the `.pt2` exports over OIP v2 REST and gRPC.

`python -m backends.oip` serves every model whose manifest entry records a `torch.export`
program (`trainers/exports/torch_export.py`), in the protocol Triton, KServe and OpenVINO Model
Server speak, so the gateway's OIP upstream (`gateway/upstreams/kinds/oip_*.py`) reaches
it exactly as it would reach Triton. `launcher.py` starts and stops it for `dualserve up`.
"""
