# The image the KubeRay manifests name (configs/kuberay/): Ray 2.60 on Python 3.11 with qwen-rerank installed from
# requirements.lock, the same pinned and hashed set `make test` runs with.
#   GPU (default): docker build -t ghcr.io/your-org/qwen-rerank:0.4.0 .
#   CPU:           docker build --build-arg BASE=rayproject/ray:2.60.0-py311 --build-arg ORT_GPU= \
#                    -t ghcr.io/your-org/qwen-rerank:0.4.0-cpu .
ARG BASE=rayproject/ray:2.60.0-py311-gpu
FROM ${BASE}
# The lock's ONNX Runtime is the CPU build; a GPU image swaps in the CUDA one (CUDA 13, see docs/gpu.md).
ARG ORT_GPU=onnxruntime-gpu==1.31.1
WORKDIR /home/ray/qwen-rerank
COPY --chown=ray requirements.lock pyproject.toml README.md ./
# torch 2.13.0+cpu in the lock (the exporter's) comes from PyTorch's CPU index.
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
        --extra-index-url https://download.pytorch.org/whl/cpu \
    && if [ -n "$ORT_GPU" ]; then pip uninstall -y onnxruntime && pip install --no-cache-dir "$ORT_GPU"; fi
COPY --chown=ray rerank_core rerank_core
COPY --chown=ray serve serve
COPY --chown=ray pipelines pipelines
COPY --chown=ray configs configs
RUN pip install --no-cache-dir --no-deps . && rerank --help > /dev/null
WORKDIR /home/ray
