/* preprocess.h: the CLIP image preprocessing of MobileVLM, bit-exact with the upstream
 * Python path (expand2square, Pillow BICUBIC resize, center crop, rescale, normalize). */
#ifndef VLM_PREPROCESS_H
#define VLM_PREPROCESS_H

#include <stdint.h>

#include "err.h"

/* Pillow's Image.resize(BICUBIC) of an 8-bit RGB image: separable, antialiased, 22-bit fixed
 * point, horizontal pass first into an 8-bit intermediate; a pass is skipped when that axis
 * keeps its size. in: (ih, iw, 3), out: (oh, ow, 3). Returns 0 or VLM_ENOMEM/VLM_EARG. */
int pil_resize_bicubic(const uint8_t *in, int iw, int ih, uint8_t *out, int ow, int oh,
                       vlm_error *e);

/* rgb (h, w, 3) -> out (3, size, size) float32: pad to a square with pad_rgb (image pasted at
 * floor offsets), resize the shortest edge to size, center crop size x size, x/255 computed in
 * float64 then cast, (x - mean) / std in float32. resized (size, size, 3) receives the 8-bit
 * image before rescaling when not NULL. */
int clip_preprocess(const uint8_t *rgb, int w, int h, int size, const uint8_t pad_rgb[3],
                    const float mean[3], const float std[3], float *out, uint8_t *resized,
                    vlm_error *e);

#endif
