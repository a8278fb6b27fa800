"""The paths the endpoint answers, one constant per dialect (shared by the app, its error shapes and its metrics)."""

COHERE_ROUTES = ("/v1/rerank", "/v2/rerank")  # Voyage's shape too, told apart by the body (serve/protocols.py)
DASHSCOPE_ROUTE = "/api/v1/services/rerank/text-rerank/text-rerank"
COMPATIBLE_ROUTE = "/compatible-api/v1/reranks"
TEI_ROUTE = "/rerank"  # Infinity's dialect too, told apart by the body
SCORE_ROUTES = ("/score", "/v1/score")
NIM_ROUTE = "/v1/ranking"  # NVIDIA NIM's reranking API
MIXEDBREAD_ROUTE = "/v1/reranking"
MODELS_ROUTE = "/v1/models"  # the OpenAI model list, where NIM clients look for the model to name

RANK_ROUTES = (*COHERE_ROUTES, DASHSCOPE_ROUTE, COMPATIBLE_ROUTE, TEI_ROUTE, *SCORE_ROUTES, NIM_ROUTE, MIXEDBREAD_ROUTE)
