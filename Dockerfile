# proex image for GPU nodes (head and workers). PyPI's default torch wheel for Linux x86-64 is a CUDA build.
#   docker build -t proex .
#   docker run --gpus all -v /data:/data -e PROEX_DATA_DIR=/data proex proex train --dataset amazon --model lightgcn
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/proex
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY proex ./proex
RUN pip install -r requirements/cuda.txt -e ".[infra,llm]"
COPY grids ./grids
COPY ray_jobs ./ray_jobs
COPY benchmarks ./benchmarks
CMD ["proex", "--help"]
