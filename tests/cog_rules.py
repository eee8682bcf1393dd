"""GDAL's rules for a Cloud-Optimized GeoTIFF, checked through rasterio.

A port of the checks of GDAL's ``validate_cloud_optimized_geotiff.py``
(swig/python/gdal-utils/osgeo_utils/samples), which needs GDAL's own Python
bindings: the ghost header, tiling, overviews, IFDs before data in increasing
order, and the data of smaller overviews before larger ones and before the
full-resolution image.
"""

from __future__ import annotations


def cog_errors(path: str) -> list[str]:
  """The rules ``path`` breaks (empty when it is a valid COG)."""
  import rasterio
  errors: list[str] = []
  with open(path, "rb") as f:
    head = f.read(1024)
  if head[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
    return ["not a TIFF file"]
  if b"GDAL_STRUCTURAL_METADATA_SIZE=" not in head:
    errors.append("no GDAL structural metadata (ghost header)")
  else:
    if b"LAYOUT=IFDS_BEFORE_DATA" not in head:
      errors.append("ghost header lacks LAYOUT=IFDS_BEFORE_DATA")
    if b"KNOWN_INCOMPATIBLE_EDITION=YES" in head:
      errors.append("the file was modified after it was made a COG (KNOWN_INCOMPATIBLE_EDITION=YES)")
  with rasterio.open(path) as src:
    if src.driver != "GTiff":
      return errors + [f"driver is {src.driver}, not GTiff"]
    bh, bw = src.block_shapes[0]
    if (src.width > 512 or src.height > 512) and bw == src.width:
      errors.append("larger than 512 pixels a side but not tiled")
    overviews = src.overviews(1)
    if (src.width > 512 or src.height > 512) and not overviews:
      errors.append("larger than 512 pixels a side but has no overviews")
    ifd = [int(src.get_tag_item("IFD_OFFSET", "TIFF", bidx=1))]
    data = [int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1) or 0)]
  for level in range(len(overviews)):
    with rasterio.open(path, overview_level=level) as ovr:
      ifd.append(int(ovr.get_tag_item("IFD_OFFSET", "TIFF", bidx=1)))
      data.append(int(ovr.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1) or 0))
  for i in range(1, len(ifd)):
    if ifd[i] <= ifd[i - 1]:
      errors.append(f"IFD of overview {i - 1} at {ifd[i]} is not after the previous IFD at {ifd[i - 1]}")
  if any(d and d < max(ifd) for d in data):
    errors.append("image data before the last IFD (IFDs must come first)")
  for i in range(1, len(data) - 1):
    if data[i] and data[i + 1] and data[i] < data[i + 1]:
      errors.append(f"data of overview {i - 1} comes before that of overview {i}")
  if len(data) > 1 and data[0] and data[1] and data[0] < data[1]:
    errors.append("full-resolution data comes before the overviews'")
  return errors
