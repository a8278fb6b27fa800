"""The Reranker facade: the seed's examples run unchanged, ranking, top_k, multiple queries, errors."""

import textwrap

import numpy as np
import pytest

from rerank_core import DocumentRank, Dtype, InvalidInputError, Reranker, RerankerResult
from rerank_core.tiny_model import TINY_MODEL

# The seed's README examples, verbatim but for the import line and the model id.
SEED_EXAMPLES = textwrap.dedent(
    '''
    from rerank_core import Reranker, Dtype

    # Qwen3 Reranker requires additional formatting
    def format_query(query: str, instruction=None):
        """You may add instruction to get better results in specific fields."""
        if instruction is None:
            instruction = "Given a web search query, retrieve relevant passages that answer the query"
        output = f"<Instruct>: {instruction}\\n<Query>: {query}\\n"
        return output

    def format_document(doc: str):
        return f"<Document>: {doc}"

    # Initialize the Qwen3 reranker
    reranker = Reranker.from_pretrained(
        "MODEL_ID",
        dtype=Dtype.F32
    )

    # Rerank documents for a query
    query = ["What is machine learning?"]
    documents = [
        "Machine learning is a subset of AI.",
        "The weather is sunny today.",
        "ML algorithms can learn from data.",
        "Pizza is a popular food."
    ]

    # Format query and documents
    query = [format_query(x) for x in query]
    documents = [format_document(x) for x in documents]

    results = reranker.rerank(query, documents, top_k=2)

    # Display results
    for result in results:
        print(f"Query: {result.query}")
        for doc in result.documents:
            print(f"  Rank {doc.rank}: {doc.document}")
            print(f"    Score: {doc.relevance_score:.4f}")
    quick_start = results

    # Rerank for multiple queries simultaneously
    queries = [
        "How to make coffee?",
        "What is Python programming?"
    ]

    documents = [
        "Coffee is brewed from beans.",
        "Python is a programming language.",
        "The weather is nice.",
        "Coffee can be made with a French press.",
        "Python is great for beginners."
    ]

    # Format queries and documents
    queries = [format_query(x) for x in queries]
    documents = [format_document(x) for x in documents]

    results = reranker.rerank(queries, documents, top_k=3)

    for result in results:
        print(f"Query: {result.query}")
        for doc in result.documents:
            print(f"  {doc.document} (Score: {doc.relevance_score:.4f})")
    multiple = results

    # Get raw scores for custom processing
    scores = reranker.compute_scores(query, documents, batch_size=4)

    # Custom ranking logic
    doc_scores = list(zip(documents, scores[0]))
    doc_scores.sort(key=lambda x: x[1], reverse=True)

    for doc, score in doc_scores:
        print(f"Score: {score:.4f} | {doc}")
    '''
)


def test_seed_examples_run_unchanged(capsys):
    ns: dict = {}
    exec(SEED_EXAMPLES.replace("MODEL_ID", TINY_MODEL), ns)
    out = capsys.readouterr().out
    assert "Rank 1:" in out and "Score:" in out
    (qs,) = ns["quick_start"]
    assert len(qs.documents) == 2 and [d.rank for d in qs.documents] == [1, 2]
    assert len(ns["multiple"]) == 2 and all(len(r.documents) == 3 for r in ns["multiple"])
    assert len(ns["scores"]) == 1 and len(ns["scores"][0]) == 5
    # the pre-formatted seed input scores exactly like plain input (not wrapped twice)
    plain = Reranker.from_pretrained(TINY_MODEL).compute_scores(
        "What is machine learning?",
        [
            "Coffee is brewed from beans.",
            "Python is a programming language.",
            "The weather is nice.",
            "Coffee can be made with a French press.",
            "Python is great for beginners.",
        ],
    )
    np.testing.assert_allclose(ns["scores"][0], plain[0], atol=1e-6)


def test_rerank_sorts_ranks_and_indexes(tiny_reranker):
    docs = ["alpha", "machine learning data", "pizza", "coffee beans", "python"]
    (result,) = tiny_reranker.rerank("What is machine learning?", docs)
    assert isinstance(result, RerankerResult) and all(isinstance(d, DocumentRank) for d in result.documents)
    scores = [d.relevance_score for d in result.documents]
    assert scores == sorted(scores, reverse=True)
    assert [d.rank for d in result.documents] == [1, 2, 3, 4, 5]
    assert sorted(d.index for d in result.documents) == list(range(5))
    assert all(docs[d.index] == d.document for d in result.documents)
    pair_scores = tiny_reranker.score_pairs([("What is machine learning?", d) for d in docs])
    assert all(abs(pair_scores[d.index] - d.relevance_score) < 1e-6 for d in result.documents)


def test_top_k_cuts_after_sorting(tiny_reranker):
    docs = [f"document number {i} about data" for i in range(7)]
    full = tiny_reranker.rerank("data", docs)[0].documents
    top = tiny_reranker.rerank("data", docs, top_k=3)[0].documents
    assert top == full[:3]
    assert len(tiny_reranker.rerank("data", docs, top_k=100)[0].documents) == 7


def test_multiple_queries_get_one_result_each(tiny_reranker):
    results = tiny_reranker.rerank(["coffee?", "python?"], ["Coffee is brewed.", "Python is a language."])
    assert [r.query for r in results] == ["coffee?", "python?"]
    grid = tiny_reranker.compute_scores(["coffee?", "python?"], ["Coffee is brewed.", "Python is a language."])
    for r, row in zip(results, grid):
        assert {d.index: d.relevance_score for d in r.documents} == pytest.approx(dict(enumerate(row)), abs=1e-6)


def test_scores_are_probabilities_with_spread(tiny_reranker, mixed_pairs):
    scores = tiny_reranker.score_pairs(mixed_pairs)
    assert scores.dtype == np.float32 and scores.shape == (len(mixed_pairs),)
    assert ((scores > 0) & (scores < 1)).all()
    assert scores.max() - scores.min() > 0.2


def test_empty_document_list_gives_empty_results(tiny_reranker):
    assert tiny_reranker.rerank("q", []) == [RerankerResult(query="q", documents=[])]
    assert tiny_reranker.compute_scores(["a", "b"], []) == [[], []]
    assert tiny_reranker.score_pairs([]).shape == (0,)


@pytest.mark.parametrize(
    "call,field",
    [
        (lambda r: r.rerank("", ["d"]), "query[0]"),
        (lambda r: r.rerank(["ok", 3], ["d"]), "query[1]"),
        (lambda r: r.rerank("q", ["d", None]), "documents[1]"),
        (lambda r: r.rerank("q", "not a list"), "documents"),
        (lambda r: r.rerank("q", ["d"], top_k=0), "top_k"),
        (lambda r: r.compute_scores("q", ["d"], batch_size=0), "batch_size"),
        (lambda r: r.score_pairs([("q",)]), "pairs[0]"),
        (lambda r: r.score_pairs([("q", 5)]), "pairs[0].document"),
    ],
)
def test_invalid_input_raises_a_typed_error_naming_the_field(tiny_reranker, call, field):
    with pytest.raises(InvalidInputError) as info:
        call(tiny_reranker)
    assert info.value.field == field and field in str(info.value)


def test_batch_size_is_per_call_only(tiny_reranker):
    before = tiny_reranker.scorer.max_rows_per_call
    a = tiny_reranker.compute_scores("q", ["x", "y y y", "z z"], batch_size=1)
    assert tiny_reranker.scorer.max_rows_per_call == before
    np.testing.assert_allclose(a, tiny_reranker.compute_scores("q", ["x", "y y y", "z z"]), atol=1e-6)


def test_dtype_accepts_enum_and_strings():
    assert Dtype.parse("F32") is Dtype.F32 and Dtype.parse("fp16") is Dtype.F16 and Dtype.parse(None) is Dtype.F32
    with pytest.raises(ValueError, match="dtype"):
        Dtype.parse("q4")


def test_an_unknown_option_is_refused_naming_it():
    from rerank_core import ConfigError

    with pytest.raises(ConfigError, match="share_prefx"):
        Reranker.from_pretrained(TINY_MODEL, share_prefx=False)
