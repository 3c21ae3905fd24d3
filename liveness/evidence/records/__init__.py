"""The record index: which records a source's evidence holds, whatever their month.

A record delivered again changes nothing, even with its dates shifted into another month, and a
record delivered again with other content (without `correction=true`) is a conflict. So an
ingest must find any record id of its source among every record stored, at any time. Keeping
every stored record hash in memory would cost 8 bytes a record (800 MB at 100M traces) and a
read of them all at every ingest. Instead each source keeps, beside the store
(`records/source=<s>/`), a cache derived from its parts:

- sorted runs on disk: the record hashes, sorted, with the delivery of each; and, sorted
  apart, the hashes of each record's version (its record hash mixed with a hash of its
  content): 20 bytes a record. A lookup reads one 4 KB segment of a run (512 hashes), found
  through fences (every 512th hash) held in memory; nothing of a run is held in memory;
- a Bloom filter of every record hash (12 bits a record, sized with room to grow, about 1%
  false positives, each record in one 64-bit word), held in memory: the new records of a
  batch, nearly all of its rows, are told new by the filter alone, and only the few it is
  unsure of are looked up in the runs.

What counts as a record's content is what the engine acts on: the link key (card or identity
number), the event time, the kind, and the face template of a face verification or the
discharge outcome of a medical visit. Parts written before such a column existed lack it: their
records' content is unknown, and a re-delivery of them is taken for identical.

The records of the delivery being loaded are held in memory as sorted batches (record hashes,
version hashes; 16 bytes a record) and in the filter, until the delivery is published as a run
of its own. The index is checked against the manifest whenever it is opened: a run covering a
part the manifest lacks (a delivery rolled back, a part compacted away) is dropped, and parts no
standing run covers are read back into a new run. A filter that knows records the store lacks
costs only a lookup, so it is kept until full. Runs merge, streaming, when the newer is at least
half the size of the older, so a source has at most log2 of its records' count of them. Files
change under a lock on the folder. Losing the folder costs one slower ingest, never a different
result.
"""
