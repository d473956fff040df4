"""Origin-tier ranking: a small neural ranker trained online from the event stream,
served through onnxruntime, and the lightweight scorer distilled from it for the edge."""
