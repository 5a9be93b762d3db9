"""The upload pipeline, one module per concern, below ``serving`` (which parses HTTP and
wires) and above the analyzers, moderation and the recommender:

- ``intake``: what an upload must satisfy before anything is stored;
- ``text`` / ``media``: storing, analyzing and routing text and media items;
- ``analysis``: composing the analyzers into one ``ItemAnalysis`` and its vectors;
- ``near_duplicates``: perceptual-hash search and its table;
- ``recovery``: work a crashed process left; ``jobs``: the media job runner;
- ``bulk``: ``reelsift import`` and ``analyze --batch`` over local files;
- ``models``: items as clients send and read them.
"""
