#!/usr/bin/env python3
"""Checks a run directory written by tessera's TensorBoard writer with TensorBoard's own code.

Usage: tensorboard_check.py <logdir>

The run is expected to hold (the contract with the C++ writer test):
  scalar "loss" steps 0..9 = 1/(step+1) (legacy simple_value); histogram "weights" steps 0 and 1 of
  the values i/1000, i = 0..999 (legacy histo); image "sample" 6x4 RGB and image "grid" (legacy
  Summary.Image, PNG); audio "tone" 8000 Hz, 1 channel, 800 frames (legacy Summary.Audio, WAV); text
  "notes" = "**hello** tessera" (string tensor, plugin "text"); hparams session start {lr: 0.01,
  optimizer: "adam", batch_norm: true}, metric scalar "hparam/accuracy" = 0.75 and session end with
  status success; a GraphDef of at least 3 nodes, one with "/" in its name.

Three readings: the raw records (framing, both CRCs and protobuf parsing of every record, with
TensorBoard's CRC and protos), event_accumulator.EventAccumulator (legacy accessors: Scalars,
Histograms, Images, Audio, Tensors, Graph, PluginTagToContent), and
plugin_event_accumulator.EventAccumulator (what the TensorBoard server reads, after data_compat
migrates legacy summaries to tensors). Prints one line per check; exit status 0 when all pass, 1
at the first failure.
"""

import io
import math
import os
import struct
import sys
import wave
import zlib


class CheckFailed(Exception):
    pass


def ok(name, detail=""):
    print("ok    %s%s" % (name, ": " + detail if detail else ""))


def require(cond, name, message):
    if not cond:
        raise CheckFailed("%s: %s" % (name, message))


def one_line(message):
    return " ".join(str(message).split())


def close(a, b, rel=1e-6, abs_tol=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


# ---- raw records ----------------------------------------------------------------------------


def check_records(logdir):
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    names = sorted(n for n in os.listdir(logdir) if "tfevents" in n)
    require(names, "event files", "no file with 'tfevents' in its name in %s" % logdir)
    for name in names:
        data = open(os.path.join(logdir, name), "rb").read()
        pos, count, first = 0, 0, None
        while pos < len(data):
            where = "%s, byte offset %d" % (name, pos)
            require(len(data) - pos >= 12, "records", "%s: truncated record header" % where)
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            require(masked_crc32c(header) == length_crc, "records", "%s: length CRC mismatch" % where)
            require(len(data) - pos - 12 >= length + 4, "records", "%s: truncated record data" % where)
            payload = data[pos + 12 : pos + 12 + length]
            (data_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
            require(masked_crc32c(payload) == data_crc, "records", "%s: data CRC mismatch" % where)
            try:
                event = event_pb2.Event.FromString(payload)
            except Exception as e:  # google.protobuf.message.DecodeError
                raise CheckFailed("records: %s: not an Event: %s" % (where, e))
            if first is None:
                first = event
            pos += 16 + length
            count += 1
        require(first is not None, "records", "%s holds no record" % name)
        require(
            first.file_version == "brain.Event:2",
            "records",
            "%s: first event has file_version %r, not 'brain.Event:2'" % (name, first.file_version),
        )
        ok("records", "%s: %d records, CRCs good, ends on a record boundary, first is brain.Event:2" % (name, count))


# ---- media ----------------------------------------------------------------------------------


def png_info(data, name):
    """(width, height, channels) of a PNG, checking its chunks and decoding it (Pillow if present)."""
    require(data[:8] == b"\x89PNG\r\n\x1a\n", name, "not a PNG (bad signature)")
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        require(len(data) - pos >= 12, name, "truncated PNG chunk")
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        require(len(body) == n and len(data) >= pos + 12 + n, name, "PNG chunk %r runs past the end" % kind)
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        require(zlib.crc32(kind + body) & 0xFFFFFFFF == crc, name, "PNG chunk %r CRC mismatch" % kind)
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        pos += 12 + n
    require(chunks[:1] == [b"IHDR"] and chunks[-1:] == [b"IEND"], name, "PNG chunks %r" % chunks)
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    require(channels is not None, name, "PNG color type %d" % color)
    raw = zlib.decompress(idat)
    row = (width * channels * depth + 7) // 8
    require(len(raw) == height * (row + 1), name, "PNG pixel data is %d bytes, expected %d" % (len(raw), height * (row + 1)))
    try:
        from PIL import Image
    except ImportError:
        return width, height, channels
    image = Image.open(io.BytesIO(data))
    image.load()
    require(image.size == (width, height), name, "Pillow reads %r" % (image.size,))
    return width, height, channels


def wav_info(data, name):
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            info = (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes())
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, struct.error) as e:
        raise CheckFailed("%s: not a WAV file: %s" % (name, e))
    require(len(frames) == info[0] * info[2] * info[3], name, "WAV data shorter than its frame count")
    return info


# ---- EventAccumulator (legacy accessors) -----------------------------------------------------


def check_accumulator(logdir):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import api_pb2, metadata as hp_metadata, plugin_data_pb2
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(logdir, size_guidance={k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE})
    acc.Reload()
    tags = acc.Tags()

    def tagged(kind, tag):
        require(tag in tags.get(kind, []), "%s %r" % (kind, tag), "missing; %s tags are %r" % (kind, tags.get(kind)))

    tagged(ea.SCALARS, "loss")
    loss = acc.Scalars("loss")
    require([e.step for e in loss] == list(range(10)), "scalar loss", "steps %r" % [e.step for e in loss])
    for e in loss:
        require(close(e.value, 1.0 / (e.step + 1)), "scalar loss", "step %d value %r" % (e.step, e.value))
    ok("scalar loss", "steps 0..9, value 1/(step+1)")

    tagged(ea.HISTOGRAMS, "weights")
    histos = acc.Histograms("weights")
    require([e.step for e in histos] == [0, 1], "histogram weights", "steps %r" % [e.step for e in histos])
    values = [i / 1000 for i in range(1000)]
    for e in histos:
        h, name = e.histogram_value, "histogram weights step %d" % e.step
        require(h.num == 1000 and h.min == 0 and close(h.max, 0.999), name, "num/min/max %r %r %r" % (h.num, h.min, h.max))
        require(close(h.sum, 499.5) and close(h.sum_squares, 332.8335), name, "sum %r sum_squares %r" % (h.sum, h.sum_squares))
        require(len(h.bucket) == len(h.bucket_limit) > 0, name, "%d buckets, %d limits" % (len(h.bucket), len(h.bucket_limit)))
        require(all(a < b for a, b in zip(h.bucket_limit, h.bucket_limit[1:])), name, "bucket limits not increasing")
        require(sum(h.bucket) == 1000, name, "bucket counts sum to %r" % sum(h.bucket))
        cumulative = 0
        for limit, count in zip(h.bucket_limit, h.bucket):  # a value equal to a limit may go either side
            cumulative += count
            below, upto = sum(v < limit for v in values), sum(v <= limit for v in values)
            require(below <= cumulative <= upto, name, "bucket up to %r holds a cumulative %r" % (limit, cumulative))
    ok("histogram weights", "steps 0 and 1, num 1000, min 0, max 0.999, buckets consistent with the values")

    for tag, size in (("sample", (6, 4)), ("grid", None)):
        tagged(ea.IMAGES, tag)
        images = acc.Images(tag)
        require([e.step for e in images] == [0], "image %s" % tag, "steps %r" % [e.step for e in images])
        e = images[0]
        width, height, channels = png_info(e.encoded_image_string, "image %s" % tag)
        require((width, height) == (e.width, e.height), "image %s" % tag,
                "PNG is %dx%d, Summary.Image says %dx%d" % (width, height, e.width, e.height))
        if size:
            require((e.width, e.height) == size and channels == 3, "image %s" % tag,
                    "%dx%d with %d channels, expected 6x4 RGB" % (e.width, e.height, channels))
        ok("image %s" % tag, "step 0, %dx%d, %d channels, PNG decodes" % (width, height, channels))

    tagged(ea.AUDIO, "tone")
    audio = acc.Audio("tone")
    require([e.step for e in audio] == [0], "audio tone", "steps %r" % [e.step for e in audio])
    e = audio[0]
    require(e.sample_rate == 8000 and e.length_frames == 800 and e.content_type == "audio/wav", "audio tone",
            "sample_rate %r length_frames %r content_type %r" % (e.sample_rate, e.length_frames, e.content_type))
    channels, rate, width, frames = wav_info(e.encoded_audio_string, "audio tone")
    require((channels, rate, width, frames) == (1, 8000, 2, 800), "audio tone",
            "WAV has %d channels, %d Hz, %d bytes/sample, %d frames" % (channels, rate, width, frames))
    ok("audio tone", "step 0, 8000 Hz, 800 frames, WAV 1 channel 16-bit")

    tagged(ea.TENSORS, "notes")
    notes = acc.Tensors("notes")
    require(acc.SummaryMetadata("notes").plugin_data.plugin_name == "text", "text notes", "plugin is not 'text'")
    array = tensor_util.make_ndarray(notes[0].tensor_proto)
    require(array.size == 1, "text notes", "tensor of shape %r" % (array.shape,))
    text = array.reshape(-1)[0]
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    require(notes[0].step == 0 and text == "**hello** tessera", "text notes", "step %d text %r" % (notes[0].step, text))
    ok("text notes", "step 0, %r" % text)

    try:
        graph = acc.Graph()
    except ValueError as e:
        raise CheckFailed("graph: %s" % e)
    names = [n.name for n in graph.node]
    require(len(names) >= 3 and any("/" in n for n in names), "graph", "nodes %r" % names)
    for n in graph.node:
        for i in n.input:
            source = i.lstrip("^").split(":")[0]
            require(source in names, "graph", "node %r has input %r, which names no node" % (n.name, i))
    ok("graph", "%d nodes, scoped names present, every input names a node" % len(names))

    try:
        content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    except KeyError:
        raise CheckFailed("hparams: no summary with plugin 'hparams' in the run")
    require(hp_metadata.SESSION_START_INFO_TAG in content and hp_metadata.SESSION_END_INFO_TAG in content,
            "hparams", "tags %r" % sorted(content))
    start = plugin_data_pb2.HParamsPluginData.FromString(content[hp_metadata.SESSION_START_INFO_TAG])
    require(start.WhichOneof("data") == "session_start_info", "hparams", "start tag holds %r" % start.WhichOneof("data"))
    hp = start.session_start_info.hparams
    got = {k: getattr(hp[k], hp[k].WhichOneof("kind") or "null_value") for k in hp}
    require(set(got) == {"lr", "optimizer", "batch_norm"}, "hparams", "hparams %r" % got)
    require(hp["lr"].WhichOneof("kind") == "number_value" and close(hp["lr"].number_value, 0.01), "hparams", "lr " + one_line(hp["lr"]))
    require(hp["optimizer"].WhichOneof("kind") == "string_value" and hp["optimizer"].string_value == "adam",
            "hparams", "optimizer " + one_line(hp["optimizer"]))
    require(hp["batch_norm"].WhichOneof("kind") == "bool_value" and hp["batch_norm"].bool_value is True,
            "hparams", "batch_norm " + one_line(hp["batch_norm"]))
    ok("hparams session start", repr(got))
    end = plugin_data_pb2.HParamsPluginData.FromString(content[hp_metadata.SESSION_END_INFO_TAG])
    require(end.WhichOneof("data") == "session_end_info", "hparams", "end tag holds %r" % end.WhichOneof("data"))
    require(end.session_end_info.status == api_pb2.STATUS_SUCCESS, "hparams",
            "end status %s" % api_pb2.Status.Name(end.session_end_info.status))
    ok("hparams session end", "STATUS_SUCCESS")
    if hp_metadata.EXPERIMENT_TAG in content:
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content[hp_metadata.EXPERIMENT_TAG]).experiment
        hnames = {i.name for i in experiment.hparam_infos}
        mtags = {m.name.tag for m in experiment.metric_infos}
        require(hnames >= set(got) and "hparam/accuracy" in mtags, "hparams experiment", "%r %r" % (hnames, mtags))
        ok("hparams experiment", "hparams %r, metrics %r" % (sorted(hnames), sorted(mtags)))

    if "hparam/accuracy" in tags.get(ea.SCALARS, []):
        metric = [e.value for e in acc.Scalars("hparam/accuracy")]
    else:
        tagged(ea.TENSORS, "hparam/accuracy")
        metric = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors("hparam/accuracy")]
    require(len(metric) >= 1 and close(metric[-1], 0.75), "hparams metric", "hparam/accuracy values %r" % metric)
    ok("hparams metric", "hparam/accuracy = %r" % metric[-1])


# ---- what the TensorBoard server reads --------------------------------------------------------


def check_server_view(logdir):
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.compat.proto import summary_pb2

    acc = pea.EventAccumulator(logdir, size_guidance={k: 0 for k in pea.DEFAULT_SIZE_GUIDANCE})
    acc.Reload()
    expected = [  # plugin, tag, number of events, data class
        ("scalars", "loss", 10, summary_pb2.DATA_CLASS_SCALAR),
        ("histograms", "weights", 2, summary_pb2.DATA_CLASS_TENSOR),
        ("images", "sample", 1, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
        ("images", "grid", 1, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
        ("audio", "tone", 1, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
        ("text", "notes", 1, summary_pb2.DATA_CLASS_TENSOR),
        ("hparams", "_hparams_/session_start_info", None, None),
        ("hparams", "_hparams_/session_end_info", None, None),
        ("graphs", "__run_graph__", None, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
    ]
    for plugin, tag, count, data_class in expected:
        name = "server view %s/%s" % (plugin, tag)
        try:
            tags = acc.PluginTagToContent(plugin)
        except KeyError:
            raise CheckFailed("%s: no data for plugin %r; plugins are %r" % (name, plugin, acc.ActivePlugins()))
        require(tag in tags, name, "missing; the plugin has tags %r" % sorted(tags))
        if data_class is not None:
            got = acc.SummaryMetadata(tag).data_class
            require(got == data_class, name, "data class %s" % summary_pb2.DataClass.Name(got))
        if count is not None:
            n = len(acc.Tensors(tag))
            require(n == count, name, "%d events, expected %d" % (n, count))
    ok("server view", "every tag found under its plugin with the right data class and event count")


def main(argv):
    if len(argv) != 2:
        print("usage: tensorboard_check.py <logdir>", file=sys.stderr)
        return 2
    logdir = argv[1]
    if not os.path.isdir(logdir):
        print("FAIL  %s is not a directory" % logdir)
        return 1
    try:
        check_records(logdir)
        check_accumulator(logdir)
        check_server_view(logdir)
    except CheckFailed as e:
        print("FAIL  %s" % e)
        return 1
    except (KeyError, ValueError) as e:  # an accessor that found nothing
        print("FAIL  %s: %s" % (type(e).__name__, e))
        return 1
    print("all TensorBoard checks passed for %s" % logdir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
