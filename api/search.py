"""Typo-tolerant movie-title search: tantivy finds the candidates, a match-quality score ranks them.

tantivy (the Rust search library behind Quickwit, here in memory) plays the role Elasticsearch
plays in the seed project: an inverted index over the folded title words, queried with an exact
term, a fuzzy term (Levenshtein distance 1 for words of 4-5 letters, 2 from 6, transpositions
counting one) and, for the last word, a prefix (type-ahead) per query word. Its candidates are
then ranked by match quality and popularity:

    quality = 0.8 * mean over query words of the best match in the title
                    (exact 1, prefix 0.8, one edit 0.6, two edits 0.4, none 0)
            + 0.2 * share of the title's words that some query word matched

rounded to 0.01, ties broken by rating count. Folding drops accents and case ("Amélie" = "amelie"),
and the year is a word of the title, so "star wars 1977" and "Matrix, The" vs "the matrix" match.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import tantivy
from rapidfuzz.distance import OSA

if TYPE_CHECKING:
    from api.catalog import Movies

CANDIDATES = 200  # tantivy hits re-ranked per query
_WORD = re.compile(r"[^\W_]+")
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)$", re.IGNORECASE)


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def display_title(title: str) -> str:
    """"Matrix, The (1999)" -> "The Matrix (1999)": the form people type."""
    year = _YEAR_SUFFIX.search(title)
    bare = title[: year.start()] if year else title
    moved = _ARTICLE.match(bare)
    if moved:
        bare = f"{moved.group(2)} {moved.group(1)}" if not moved.group(2).endswith("'") else moved.group(2) + moved.group(1)
    return bare + (title[year.start():] if year else "")


def _fuzzy_distance(word: str) -> int:
    return 0 if len(word) < 4 else 1 if len(word) < 6 else 2


@dataclass(frozen=True)
class Hit:
    row: int  # the movie's row in Movies
    quality: float


class TitleIndex:
    def __init__(self, index: tantivy.Index, title_words: list[list[str]], rating_count, nbytes: int) -> None:
        self._index = index
        self._searcher = index.searcher()
        self._schema = index.schema
        self._title_words = title_words
        self._rating_count = rating_count
        self.nbytes = nbytes

    @classmethod
    def build(cls, movies: Movies) -> TitleIndex:
        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("row", stored=True, indexed=True, fast=True)
        builder.add_text_field("title", stored=False, tokenizer_name="default")
        builder.add_integer_field("year", stored=False, indexed=True, fast=True)
        builder.add_text_field("genre", stored=False, tokenizer_name="raw")
        schema = builder.build()
        index = tantivy.Index(schema)  # in memory: rebuilt from the table on refresh
        writer = index.writer(heap_size=50_000_000, num_threads=1)
        title_words, size = [], 0
        for row, (title, year, genres) in enumerate(zip(movies.titles, movies.years, movies.genres)):
            found = words(title) + ([str(int(year))] if year else [])  # "star wars 1977"
            title_words.append(found)
            size += sum(len(w) for w in found) + 16
            writer.add_document(tantivy.Document(row=row, title=" ".join(found), year=int(year),
                                                 genre=[fold(g) for g in genres]))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return cls(index, title_words, movies.rating_count, size)

    def search(self, query: str, *, year: int | None = None, genre: str | None = None) -> list[Hit]:
        """Every candidate, best first (the caller pages)."""
        asked = words(query)
        if not asked:
            return []
        should = []
        for i, word in enumerate(asked):
            should.append((tantivy.Occur.Should, tantivy.Query.boost_query(
                tantivy.Query.term_query(self._schema, "title", word), 3.0)))
            if (distance := _fuzzy_distance(word)) > 0:
                should.append((tantivy.Occur.Should, tantivy.Query.fuzzy_term_query(
                    self._schema, "title", word, distance=distance, transposition_cost_one=True)))
            if i == len(asked) - 1:
                should.append((tantivy.Occur.Should, tantivy.Query.fuzzy_term_query(
                    self._schema, "title", word, distance=0, prefix=True)))
        clauses = [(tantivy.Occur.Must, tantivy.Query.boolean_query(should))]
        if year is not None:
            clauses.append((tantivy.Occur.Must, tantivy.Query.term_query(self._schema, "year", year)))
        if genre is not None:
            clauses.append((tantivy.Occur.Must, tantivy.Query.term_query(self._schema, "genre", fold(genre))))
        result = self._searcher.search(tantivy.Query.boolean_query(clauses), CANDIDATES, count=False)
        hits = []
        for _, address in result.hits:
            row = self._searcher.doc(address)["row"][0]
            hits.append(Hit(row, self.quality(asked, self._title_words[row])))
        hits.sort(key=lambda h: (-h.quality, -int(self._rating_count[h.row]), h.row))
        return hits

    @staticmethod
    def quality(asked: list[str], title: list[str]) -> float:
        if not title:
            return 0.0
        matched_title = set()
        total = 0.0
        for i, word in enumerate(asked):
            best, best_at = 0.0, None
            for j, candidate in enumerate(title):
                if candidate == word:
                    score = 1.0
                elif i == len(asked) - 1 and len(word) >= 2 and candidate.startswith(word):
                    score = 0.8
                else:
                    limit = _fuzzy_distance(word)
                    distance = OSA.distance(word, candidate, score_cutoff=limit) if limit else limit + 1
                    score = 0.6 if distance == 1 else 0.4 if distance == 2 and limit >= 2 else 0.0
                if score > best:
                    best, best_at = score, j
            total += best
            if best_at is not None:
                matched_title.add(best_at)
        return round(0.8 * total / len(asked) + 0.2 * len(matched_title) / len(title), 2)
