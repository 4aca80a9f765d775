"""Shared infrastructure of the learned image (intra) codecs: Ballé 2017 (`plugins/nvc_balle`) and EVC
(`plugins/nvc_evc`). Stable interface, one module per job:

* `gdn`: `GDN(c)`, `IGDN(c)` with non-negative β ≥ 1e-6, γ ≥ 0 (`NonNegative` reparameterisation).
* `factorized`: `FactorizedDensity(c)` (per-channel learned density, `likelihood(y)`), `export_tables()` →
  `EntropyTables` (integer PMFs made once at export time), `encode_latents` / `decode_latents`.
* `image`: the `.nvc` image container (`pack_image` / `parse_image`, docs/bitstream.md §9) and file-level
  `encode_image_file` / `decode_image_file` / `inspect_image_file` (used by `nvc image`).
* `data`: training images from offline packages only (`load_training_images`, `CropSampler`); the RD test photos
  (`HELD_OUT`) are never loaded.
* `train`: the generic loop (`train_loop`, `resolve_device`, `seed_everything`) used by `nvc train-intra`.
* `weights`: fp16 `.npz` weights + tables, loaded with `allow_pickle=False` (`save_model`, `load_model_arrays`).
* `rd`: held-out RD against JPEG/WebP with BD-rates (`python -m nvc_pipe.intra.rd`).

The image codec contract itself (`ImageCodec`, `load_image_codec`) is in `nvc_pipe/plugins.py`. Importing this
package imports nothing heavy; import the submodules you need.
"""
