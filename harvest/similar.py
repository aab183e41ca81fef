"""Similar articles: for each record, the stored records whose text is most like its own.

Pure: documents in, neighbour rows out. A document is a dict with `pmid`, `title`,
`abstract`, `keywords` and `mesh` (lists of strings) and `tags` (a list of (facet, value));
`document_of(record)` makes one from a parsed record, `store.refresh_similar` from stored
rows. Each document becomes terms (title, abstract and keyword words; whole MeSH headings;
evidence tags), weighted by TF-IDF (sublinear tf, terms in one document or in more than half
of them dropped) and cut to its `STRONGEST` terms, and two records are as similar as the
cosine of those vectors. `neighbour_rows` gives up to `TOP` neighbours a record, best first,
each with the shared terms that weighed most in its score.

Bounded for a million records: the matrix is sparse (float32, at most `STRONGEST` terms a
row), built in one streaming pass over the documents (never held as a list), and scores are
computed `BATCH` rows at a time, so memory is the matrix plus one batch of scores.
Must never: read or write the catalog, or reach the network.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import sparse

TOP = 10  # neighbours kept per record
STRONGEST = 40  # terms kept per record (its highest TF-IDF weights)
SHARED_SHOWN = 5  # shared terms stored per neighbour
BATCH = 512  # records scored at once
MIN_SCORE = 0.05  # below this two records share nothing worth showing

_WORD = re.compile(r"[a-z][a-z0-9]+(?:-[a-z0-9]+)*")
# scikit-learn's English stop words (`sklearn.feature_extraction.text.ENGLISH_STOP_WORDS`, from
# the Glasgow Information Retrieval Group's list; BSD licence), written out so that the harvester
# never imports scikit-learn (see `tfidf`); tests/test_similar.py checks the copy against it.
ENGLISH_STOP_WORDS = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also
    although always am among amongst amoungst amount an and another any anyhow anyone anything
    anyway anywhere are around as at back be became because become becomes becoming been before
    beforehand behind being below beside besides between beyond bill both bottom but by call can
    cannot cant co con could couldnt cry de describe detail do done down due during each eg
    eight either eleven else elsewhere empty enough etc even ever every everyone everything
    everywhere except few fifteen fifty fill find fire first five for former formerly forty
    found four from front full further get give go had has hasnt have he hence her here
    hereafter hereby herein hereupon hers herself him himself his how however hundred i ie if in
    inc indeed interest into is it its itself keep last latter latterly least less ltd made many
    may me meanwhile might mill mine more moreover most mostly move much must my myself name
    namely neither never nevertheless next nine no nobody none noone nor not nothing now nowhere
    of off often on once one only onto or other others otherwise our ours ourselves out over own
    part per perhaps please put rather re same see seem seemed seeming seems serious several she
    should show side since sincere six sixty so some somehow someone something sometime
    sometimes somewhere still such system take ten than that the their them themselves then
    thence there thereafter thereby therefore therein thereupon these they thick thin third this
    those though three through throughout thru thus to together too top toward towards twelve
    twenty two un under until up upon us very via was we well were what whatever when whence
    whenever where whereafter whereas whereby wherein whereupon wherever whether which while
    whither who whoever whole whom whose why will with within without would yet you your yours
    yourself yourselves
    """.split()
)
_STOP = ENGLISH_STOP_WORDS | {
    "study",
    "studies",
    "patients",
    "patient",
    "results",
    "result",
    "methods",
    "method",
    "conclusion",
    "conclusions",
    "background",
    "objective",
    "objectives",
    "using",
    "used",
    "use",
    "group",
    "groups",
    "compared",
    "effect",
    "effects",
    "also",
    "may",
    "however",
    "found",
    "showed",
    "shown",
    "significant",
    "significantly",
    "total",
    "data",
    "one",
    "two",
}


def _word(token: str) -> str:
    """A light plural fold (depressions -> depression), no stemmer dependency."""
    if len(token) > 4 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def words(text: str | None) -> list[str]:
    return [_word(t) for t in _WORD.findall((text or "").lower()) if len(t) > 2 and t not in _STOP]


def terms_of(doc: dict) -> list[str]:
    """The terms a document is compared on; the title's words count twice."""
    terms = words(doc.get("title")) * 2 + words(doc.get("abstract"))
    for keyword in doc.get("keywords") or ():
        terms.extend(words(keyword))
    terms.extend("mesh:" + m for m in doc.get("mesh") or () if m)
    terms.extend(f"tag:{facet}={value}" for facet, value in doc.get("tags") or () if value)
    return terms


def terms_fingerprint(terms: list[str]) -> str:
    """What a record is compared on, as a fingerprint: a refresh recomputes only records whose terms changed."""
    return hashlib.blake2b("\x1f".join(terms).encode("utf-8"), digest_size=8).hexdigest()


def term_label(term: str) -> str:
    """A term as the article page shows it."""
    if term.startswith("mesh:"):
        return term[5:] + " (MeSH)"
    if term.startswith("tag:"):
        facet, _, value = term[4:].partition("=")
        return f"{value.replace('_', ' ')} ({facet})"
    return term


def document_of(record: Mapping, tags: Iterable[dict] | None = None) -> dict:
    """The document of a parsed record (`pubmed_xml`), with its tags (`tags.tag_article`)."""
    return {
        "pmid": int(record["pmid"]),
        "title": record.get("title"),
        "abstract": record.get("abstract"),
        "keywords": [k["keyword"] for k in record.get("keywords") or [] if k.get("keyword")],
        "mesh": [m["descriptor_name"] for m in record.get("mesh") or [] if m.get("descriptor_name")],
        "tags": sorted({(t["facet"], t["value"]) for t in tags or ()}),
    }


@dataclass
class Index:
    pmids: np.ndarray  # row i is the record pmids[i]
    matrix: sparse.csr_matrix  # rows: L2-normalised TF-IDF over each record's strongest terms
    vocabulary: np.ndarray  # column j is the term vocabulary[j]
    fingerprints: dict[int, str]  # pmid -> terms_fingerprint of what it was indexed from

    def rows_of(self, pmids: Iterable[int]) -> np.ndarray:
        where = {p: i for i, p in enumerate(self.pmids.tolist())}
        return np.array(sorted(where[p] for p in pmids if p in where), dtype=np.int64)


def build_index(docs: Iterable[dict], *, strongest: int = STRONGEST) -> Index:
    """One pass over `docs` (a generator is fine): the sparse matrix of every record."""
    pmids: list[int] = []
    fingerprints: dict[int, str] = {}

    def streamed() -> Iterator[list[str]]:
        for doc in docs:
            terms = terms_of(doc)
            pmids.append(int(doc["pmid"]))
            fingerprints[int(doc["pmid"])] = terms_fingerprint(terms)
            yield terms

    try:
        matrix, vocabulary = tfidf(streamed())
    except NothingShared:  # fewer than four records, or no term in two of them: nothing is similar
        return Index(
            np.array(pmids, dtype=np.int64),
            sparse.csr_matrix((len(pmids), 0), dtype=np.float32),
            np.array([], dtype=object),
            fingerprints,
        )
    matrix = _keep_strongest(matrix.tocsr(), strongest)
    return Index(np.array(pmids, dtype=np.int64), matrix, vocabulary, fingerprints)


class NothingShared(ValueError):
    """No term is in at least two records and in at most half of them."""


def tfidf(term_lists: Iterable[list[str]]) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(L2-normalised TF-IDF rows, the terms of its columns) of the documents' term lists, in one
    pass: what scikit-learn's ``TfidfVectorizer(analyzer=lambda terms: terms, lowercase=False,
    min_df=2, max_df=0.5, sublinear_tf=True, dtype=np.float32)`` computes, value for value
    (tests/test_similar.py holds it to that on the shared records), with each row's entries in
    the order scikit-learn 1.9's leaves them, which decides which of two equal weights
    `_keep_strongest` keeps: the lists come out as they did when the harvester called it.

    Written out with NumPy and SciPy because importing scikit-learn takes about a second (it
    loads scipy.stats), which every harvest, import and retag that stores a record paid for a
    refresh that often takes a tenth of that.

    Weights: (1 + ln tf) x idf, idf = ln((1 + n) / (1 + df)) + 1, over the terms in at least 2
    and at most n / 2 of the n documents; each row scaled to unit length."""
    vocabulary: defaultdict[str, int] = defaultdict()  # term -> column, in the order first seen
    vocabulary.default_factory = vocabulary.__len__
    column_of = vocabulary.__getitem__
    columns = array("i")  # 4 bytes an entry where a list takes 8: a million records hold ~10^8
    counts = array("i")
    indptr = [0]
    for terms in term_lists:
        counter = Counter(map(column_of, terms))  # columns in the order the document has them
        columns.extend(counter)
        counts.extend(counter.values())
        indptr.append(len(columns))
    n_docs = len(indptr) - 1
    index_type = np.int32 if indptr[-1] <= np.iinfo(np.int32).max else np.int64
    if not vocabulary or n_docs * 0.5 < 2:
        raise NothingShared("fewer than four documents, or no terms")
    matrix = sparse.csr_matrix(
        (
            np.frombuffer(counts, dtype=np.intc),
            np.frombuffer(columns, dtype=np.intc),
            np.asarray(indptr, dtype=index_type),
        ),
        shape=(n_docs, len(vocabulary)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    # Columns renumbered in the terms' alphabetical order (the order within a row is kept).
    by_name = sorted(vocabulary.items())
    renumber = np.empty(len(by_name), dtype=matrix.indices.dtype)
    for new, (_, old) in enumerate(by_name):
        renumber[old] = new
    matrix.indices = renumber.take(matrix.indices, mode="clip")
    df = np.bincount(matrix.indices, minlength=matrix.shape[1])
    kept = np.where((df <= n_docs * 0.5) & (df >= 2))[0]
    if not len(kept):
        raise NothingShared("no term in at least two documents and at most half of them")
    matrix = matrix[:, kept]
    names = np.array([name for name, _ in by_name], dtype=object)[kept]
    idf = np.full(len(kept), n_docs + 1, dtype=np.float32)
    idf /= df[kept].astype(np.float32) + np.float32(1.0)
    np.log(idf, out=idf)
    idf += np.float32(1.0)
    np.log(matrix.data, out=matrix.data)
    matrix.data += np.float32(1.0)
    matrix.data *= idf[matrix.indices]
    # Unit rows: the squares in float32, their sum and the division in float64, as scikit-learn's
    # compiled normalisation does.
    squares = (matrix.data * matrix.data).astype(np.float64)
    row_lengths = np.diff(matrix.indptr)
    norms = np.zeros(n_docs, dtype=np.float64)
    nonempty = row_lengths > 0
    norms[nonempty] = np.sqrt(np.add.reduceat(squares, matrix.indptr[:-1][nonempty]))
    scale = np.repeat(norms, row_lengths)
    divide = scale > 0
    matrix.data[divide] = (matrix.data[divide].astype(np.float64) / scale[divide]).astype(np.float32)
    return matrix, names


def _keep_strongest(matrix: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
    """Each row cut to its n largest weights, then L2-normalised again."""
    data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    keep = np.ones(len(data), dtype=bool)
    for i in range(matrix.shape[0]):
        start, end = indptr[i], indptr[i + 1]
        if end - start > n:
            row = data[start:end]
            cut = np.argpartition(row, len(row) - n)[: len(row) - n]
            keep[start + cut] = False
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))[keep]
    out = sparse.csr_matrix((data[keep], (rows, indices[keep])), shape=matrix.shape, dtype=np.float32)
    norms = np.sqrt(np.asarray(out.multiply(out).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sparse.csr_matrix(sparse.diags(1 / norms) @ out, dtype=np.float32)


def neighbour_rows(
    index: Index, pmids: Iterable[int] | None = None, *, top: int = TOP, batch: int = BATCH
) -> Iterator[dict]:
    """Rows (pmid, rank, similar_pmid, score, shared_terms) for `pmids` (all when None):
    each record's `top` most similar other records, best first; never itself."""
    rows = np.arange(len(index.pmids)) if pmids is None else index.rows_of(pmids)
    if index.matrix.shape[1] == 0 or not len(rows):
        return
    columns = index.matrix.T.tocsr()
    labels = [term_label(str(term)) for term in index.vocabulary]
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        scores = (index.matrix[chunk] @ columns).tocsr()
        pairs: list[tuple[int, int, int, float]] = []  # (row, rank, other row, score)
        for k, i in enumerate(chunk):
            lo, hi = scores.indptr[k], scores.indptr[k + 1]
            cand, vals = scores.indices[lo:hi], scores.data[lo:hi]
            mask = (cand != i) & (vals >= MIN_SCORE)
            cand, vals = cand[mask], vals[mask]
            if len(cand) > top:
                best = np.argpartition(-vals, top)[:top]
                cand, vals = cand[best], vals[best]
            # best first; equal scores by PMID so the order never depends on storage order
            order = np.lexsort((index.pmids[cand], -np.round(vals, 6)))
            pairs.extend((int(i), rank, int(cand[j]), float(vals[j])) for rank, j in enumerate(order, start=1))
        if not pairs:
            continue
        shared = _shared_terms_of_pairs(index, labels, [p[0] for p in pairs], [p[2] for p in pairs])
        for (i, rank, other, score), terms in zip(pairs, shared):
            yield {
                "pmid": int(index.pmids[i]),
                "rank": rank,
                "similar_pmid": int(index.pmids[other]),
                "score": round(score, 4),
                "shared_terms": terms,
            }


def _shared_terms_of_pairs(
    index: Index, labels: list[str], left: list[int], right: list[int], n: int = SHARED_SHOWN
) -> list[str]:
    """`shared_terms` of many pairs of rows at once, joined as stored: one elementwise product
    of the pairs' rows instead of an intersection per pair (a 120,000-record refresh spent a
    third of its time in those, one pair at a time). Same terms, same order: weight first,
    then the term's column, as the stable sort over the sorted intersection gives them."""
    m = index.matrix
    product = m[np.asarray(left)].multiply(m[np.asarray(right)]).tocsr()
    row_of = np.repeat(np.arange(product.shape[0]), np.diff(product.indptr))
    order = np.lexsort((product.indices, -product.data, row_of))
    rank = np.arange(len(order)) - product.indptr[row_of[order]]
    kept = order[rank < n]
    kept_labels = [labels[c] for c in product.indices[kept].tolist()]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(row_of[kept], minlength=product.shape[0])))).tolist()
    return ["; ".join(kept_labels[bounds[r] : bounds[r + 1]]) for r in range(product.shape[0])]


def shared_terms(index: Index, i: int, j: int, n: int = SHARED_SHOWN) -> list[str]:
    """The terms of rows i and j that contributed most to their score, as labels."""
    m = index.matrix
    a, b = slice(m.indptr[i], m.indptr[i + 1]), slice(m.indptr[j], m.indptr[j + 1])
    common, ia, ib = np.intersect1d(m.indices[a], m.indices[b], assume_unique=True, return_indices=True)
    weight = m.data[a][ia] * m.data[b][ib]
    order = np.argsort(-weight, kind="stable")[:n]
    return [term_label(str(index.vocabulary[common[k]])) for k in order]


def similar_rows(docs: Iterable[dict], pmids: Iterable[int] | None = None, *, top: int = TOP) -> list[dict]:
    """Index `docs` and return the neighbour rows of `pmids` (all when None)."""
    return list(neighbour_rows(build_index(docs), pmids, top=top))
