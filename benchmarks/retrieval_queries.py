"""The queries of benchmarks/retrieval.py and their hit rules, written down before the first run.

Never change a query, a rule or a corpus's sample here after seeing results: add new queries to ADDED (reported
apart) instead. A topic query's hits are the documents whose ``label`` is its topic; a property query's hits are
the documents whose text its regular expression matches (``re.search``). A property query with fewer than
MIN_HITS hits in a corpus is left out of that corpus and the output says so.

"packages" (Debian package descriptions by archive section) is the development corpus: methods are tuned on it.
"fortunes" (Debian fortunes by topic file) is held out: reported, never tuned on.
"""
from __future__ import annotations

MIN_HITS = 20

NEGATION = r"(?i)\b(?:not|no|never|nothing|nobody|none|nowhere|neither|nor|cannot)\b|n't\b"
MONEY = (r"\$\s?\d|(?i:\b(?:money|dollars?|cents?|penny|pennies|prices?|priced|pay|pays|paid|cost|costs|cash|buy|"
         r"buys|bought|sell|sells|sold|tax|taxes|wealth|wealthy|rich|poor|bank|banks|salary|wages?|cheap|expensive|"
         r"afford|profit|debt|fee|fees|free of charge)\b)")
NUMBERS = (r"\d|\b(?:January|February|March|April|June|July|August|September|October|November|December|Monday|"
           r"Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b|(?i:\b(?:two|three|four|five|six|seven|eight|nine|"
           r"ten|eleven|twelve|twenty|thirty|forty|fifty|hundreds?|thousands?|millions?|billions?)\b)")
QUESTIONS = r"\?(?=\s|$|[\"')\]])"

PROPERTIES = {  # corpus: {query: hit rule}
    "fortunes": {
        "questions": QUESTIONS,
        "negation": NEGATION,
        "money and prices": MONEY,
        "numbers and dates": NUMBERS,
        "quotations with an author": r"(?m)^\s*--\s*\S",
        "code or commands": r"(?m)^\s*[$#%>] \w|[{};]\s*$|#include|\b\w+\(\)|\bsudo\b|/usr/|/bin/|\bprintf\b|==",
        "exclamations": r"!(?=\s|$|[\"')\]])",
        "first person": r"\b(?:I|I'm|I've|I'll|I'd)\b|(?i:\b(?:me|my|mine|myself)\b)",
        "dialogue": r"(?m)^\s*[A-Z][\w .']{0,25}:\s+\S(?:.|\n)*^\s*[A-Z][\w .']{0,25}:\s+\S",
    },
    "packages": {
        "questions": QUESTIONS,
        "negation": NEGATION,
        "money and prices": MONEY,
        "numbers and dates": NUMBERS,
        "command-line tools": r"(?i)\bcommand[- ]line\b|\bconsole\b|\bterminal\b|\bCLI\b",
        "graphical user interface": r"\bGUI\b|\bGTK\+?|\bQt\b|\bKDE\b|\bGNOME\b|(?i:\bgraphical\b)",
        "file formats": (r"\b(?:PNG|JPEG|JPG|GIF|SVG|PDF|MP3|Ogg|OGG|FLAC|XML|JSON|CSV|HTML|TIFF|WAV|YAML|TrueType|"
                         r"OpenType|MIDI)\b"),
        "web addresses": r"https?://|\bwww\.|\b\w+\.(?:org|com|net)\b",
        "version numbers": r"\b\d+\.\d+",
    },
}

TOPICS = {  # corpus: {query: the label its hits have}
    "fortunes": {
        "computers and programming": "computers",
        "education and school": "education",
        "food and cooking": "food",
        "law and lawyers": "law",
        "love and romance": "love",
        "politics and government": "politics",
        "science and scientists": "science",
        "sports": "sports",
        "Star Trek": "startrek",
        "work and jobs": "work",
    },
    "packages": {
        "games": "games",
        "fonts and typefaces": "fonts",
        "audio and music": "sound",
        "mathematics": "math",
        "images and graphics": "graphics",
        "email": "mail",
        "web servers": "httpd",
        "text editors": "editors",
        "databases": "database",
        "version control": "vcs",
        "electronics and circuit design": "electronics",
        "amateur radio": "hamradio",
    },
}

CLUSTERING = {  # corpus: (the five topics clustered, axis queries as a user would write them)
    "fortunes": (("computers", "food", "law", "sports", "startrek"),
                 ("computers, food, law, sports, Star Trek", "computers food law sports Star Trek")),
    "packages": (("games", "fonts", "sound", "math", "mail"),
                 ("games, fonts, music, mathematics, email", "games fonts music mathematics email")),
}

# Queries added after the first run, reported apart from those above.
ADDED: dict[str, dict[str, str]] = {"fortunes": {}, "packages": {}}
