# make_smoothing_refs.py: regression JPEGs (and their Pillow decodes) for libjpeg-turbo 2.1.5's
# block smoothing of progressive files whose low-frequency AC coefficients are not exact at the
# end, for libjpeg's rule at a missing restart marker and for its reading of invalid Huffman codes. Run inside this directory with
# Debian's python3-pil 9.4 (libjpeg-turbo 2.1.5) and cjpeg from libjpeg-turbo-progs 2.1.5;
# the photos are those of the shared assets (shared/assets/photos, beside the checkout).
# The C tests only read the outputs; this script is kept for provenance.
import io, os, subprocess, numpy as np
from PIL import Image
PH = '../../../../../shared/assets/photos/'
SCANS = {
 'dconly': "0 1 2: 0 0 0 0;\n",
 'dcal1': "0 1 2: 0 0 0 1;\n",
 'acal1': "0 1 2: 0 0 0 0;\n0: 1 63 0 1;\n1: 1 63 0 1;\n2: 1 63 0 1;\n",
 'oddac': "0 1 2: 0 0 0 0;\n" + ''.join(f"{c}: {k} {k} 0 0;\n" for c in range(3) for k in range(1, 64, 2)),
 'gdconly': "0: 0 0 0 0;\n",
 'gacal1': "0: 0 0 0 0;\n0: 1 63 0 1;\n",
}
def src(photo, box, size, gray=False):
    im = Image.open(PH + photo).convert('RGB').crop(box).resize(size, Image.BILINEAR)
    return im.convert('L') if gray else im
def cjpeg(im, args):
    b = io.BytesIO(); im.save(b, 'PPM')
    return subprocess.run(['cjpeg'] + args, input=b.getvalue(), capture_output=True, check=True).stdout
def cut_at_rst(d, k):
    # the last scan's data up to (not including) its k-th RST marker, then EOI
    sos = d.rfind(b'\xff\xda'); L = d[sos + 2] * 256 + d[sos + 3]
    i = sos + 2 + L; seen = 0
    while True:
        i = d.index(b'\xff', i)
        if 0xD0 <= d[i + 1] <= 0xD7:
            seen += 1
            if seen == k: return d[:i] + b'\xff\xd9'
        i += 2
def cut_last_scan(d, num, den):
    sos = d.rfind(b'\xff\xda'); L = d[sos + 2] * 256 + d[sos + 3]
    start = sos + 2 + L; end = len(d) - 2
    return d[:start + (end - start) * num // den] + b'\xff\xd9'
cases = []
def case(name, photo, box, size, sample, scans, quality, restart=None, cut=None, gray=False, prog=True):
    open('scan.tmp', 'w').write(SCANS[scans])
    args = ['-quality', str(quality)] + ([] if gray else ['-sample', sample]) + (['-scans', 'scan.tmp'] if prog else []) + (['-restart', restart] if restart else [])
    d = cjpeg(src(photo, box, size, gray), args)
    if isinstance(cut, int): d = cut_at_rst(d, cut)
    elif cut: d = cut_last_scan(d, *cut)
    open(name, 'wb').write(d); cases.append(name)
B = (100, 80, 420, 330)
case('smooth_dconly_40x24_420.jpg', 'sam_dog.jpg', B, (40, 24), '2x2', 'dconly', 75)
case('smooth_dcal1_17x13_422.jpg', 'darknet_giraffe.jpg', B, (17, 13), '2x1', 'dcal1', 75)
case('smooth_acal1_48x40_420.jpg', 'llava_extreme_ironing_street.jpg', B, (48, 40), '2x2', 'acal1', 80)
case('smooth_oddac_33x31_420.jpg', 'mobilevlm_demo_bookcover.jpg', B, (33, 31), '2x2', 'oddac', 50)
case('smooth_cut_acal1_40x40_420.jpg', 'sam_dog.jpg', B, (40, 40), '2x2', 'acal1', 75, cut=(1, 2))
case('smooth_cut_dconly_rst_33x31_gray.jpg', 'darknet_horses.jpg', B, (33, 31), None, 'gdconly', 75, restart='1', cut=(1, 4), gray=True)
case('smooth_cut_acal1_rst_31x47_gray.jpg', 'darknet_horses.jpg', B, (31, 47), None, 'gacal1', 60, restart='1', cut=(2, 4), gray=True)
case('restart_cut_baseline_40x24_420.jpg', 'sam_dog.jpg', B, (40, 24), '2x2', 'dconly', 75, restart='1', cut=1, prog=False)
case('restart_cut_dconly_33x31_gray.jpg', 'darknet_horses.jpg', B, (33, 31), None, 'gdconly', 75, restart='1', cut=2, gray=True)
# Corrupt data: smooth_dcal1_17x13_422.jpg with three bytes changed (a luma and a chroma quantizer
# set to 0, one chroma DC Huffman symbol 3 -> 7): the stream desynchronises and hits codes that
# are not in the table, which libjpeg reads as 17 bits and a zero symbol.
d = bytearray(open('smooth_dcal1_17x13_422.jpg', 'rb').read())
for off, old, new in [(47, 18, 0), (116, 50, 0), (225, 3, 7)]:
    assert d[off] == old
    d[off] = new
open('bad_huffman_17x13_422.jpg', 'wb').write(bytes(d)); cases.append('bad_huffman_17x13_422.jpg')
for n in cases:
    a = np.asarray(Image.open(n).convert('RGB'))
    np.save(n + '.npy', a)
os.remove('scan.tmp')
print('\n'.join(cases))
