"""Test setup: an offline environment, then the shared fixtures as a pytest plugin (tests/support).

The environment variables are set before anything imports huggingface_hub, transformers or
gradio, since those read them at import time; pytest loads the plugins named here after this
file has run.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
# The encoders run on torch unless a test asks for ONNX (tests/models/test_runtime.py): an export
# per tiny model folder would cost seconds in every test that loads one.
os.environ.setdefault("EMBEDDING_RUNTIME", "torch")
os.environ.setdefault("RERANKER_RUNTIME", "torch")
# The tiny LLM in fp32 whatever the CPU, so its outputs do not depend on the machine (LLM_DTYPE=auto
# would be bf16 on a CPU with AMX); tests/models/test_runtime.py checks the choice itself.
os.environ.setdefault("LLM_DTYPE", "float32")

pytest_plugins = ["tests.support.fixtures", "tests.support.models"]
