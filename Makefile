# Makefile: the whole build. `make`, `make test`, `make CROSS=aarch64-linux-gnu-`.
# Every file is built for the baseline of its architecture; only kernels/<isa>/ files get ISA
# flags, and the dispatch table picks them at run time, so one binary runs on every CPU.

CROSS ?=
CC := $(CROSS)gcc
AR := $(CROSS)ar
ARCH := $(shell $(CC) -dumpmachine | cut -d- -f1)
O ?= $(if $(CROSS),build-$(ARCH),build)
RUN ?= $(if $(CROSS),qemu-$(ARCH) -L /usr/$(CROSS:%-=%) $(if $(filter aarch64,$(ARCH)),-cpu max),)

OPT ?= -O2
WERROR ?=
CFLAGS ?=
override CFLAGS += -std=c11 $(OPT) -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wvla \
    -fno-strict-aliasing -D_GNU_SOURCE -Iinclude -Isrc -Isrc/image -Ikernels -Iweights-tool $(WERROR)
LDFLAGS ?=
ifeq ($(STATIC),1)
LDFLAGS += -static
endif
LDLIBS := -lm -lpthread

# The library: runtime core, image decoders, kernels.
LIB_SRC := $(filter-out src/vlm-run.c,$(wildcard src/*.c)) $(wildcard src/image/*.c) \
    $(wildcard kernels/*.c kernels/ref/*.c)
ifeq ($(ARCH),x86_64)
LIB_SRC += $(wildcard kernels/avx2/*.c kernels/avx2vnni/*.c kernels/avx512/*.c)
# AVX-VNNI needs GCC >= 11 or clang >= 12; without it vex.c builds empty (kernels/avx2vnni/vex.c).
AVXVNNI_FLAG := $(shell echo 'int x;' | $(CC) -mavxvnni -x c -c - -o /dev/null 2>/dev/null && echo -mavxvnni)
# evex.c with the 16 vector registers of the VEX build, where the compiler can (GCC).
XMM16_FIXED := $(shell echo 'int x;' | $(CC) -ffixed-xmm16 -x c -c - -o /dev/null 2>/dev/null && \
    echo $(foreach r,16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31,-ffixed-xmm$(r)))
endif
ifeq ($(ARCH),aarch64)
LIB_SRC += $(wildcard kernels/neon/*.c)
endif
TOOL_SRC := $(filter-out weights-tool/main.c,$(wildcard weights-tool/*.c))
TEST_SUPPORT_SRC := $(filter-out tests/test_% tests/fuzz_%,$(wildcard tests/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
ifeq ($(STATIC),1)
# test_alloc replaces malloc by symbol interposition, which a static libc.a does not allow.
TEST_SRC := $(filter-out tests/test_alloc.c,$(TEST_SRC))
endif
BENCH_SRC := $(wildcard bench/*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(O)/obj/%.o,$(1))
LIB := $(O)/libvlm.a
TOOL_OBJ := $(call obj,$(TOOL_SRC))
TEST_SUPPORT_OBJ := $(call obj,$(TEST_SUPPORT_SRC))
TESTS := $(patsubst tests/%.c,$(O)/tests/%,$(TEST_SRC))
BENCHES := $(patsubst bench/%.c,$(O)/%,$(BENCH_SRC))
FUZZ_REPLAY := $(patsubst tests/fuzz/%.c,$(O)/fuzz/%,$(FUZZ_SRC))

all: $(O)/vlm-run $(O)/weights-tool $(LIB) $(BENCHES) $(TESTS) $(FUZZ_REPLAY)

# Per-ISA flags (pattern-specific, as each ISA file needs).
$(O)/obj/kernels/avx2/%.o: override CFLAGS += -mavx2 -mfma -mf16c
$(O)/obj/kernels/avx512/%.o: override CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c
$(O)/obj/kernels/avx2vnni/vex.o: override CFLAGS += -mavx2 -mfma -mf16c $(AVXVNNI_FLAG)
$(O)/obj/kernels/avx2vnni/evex.o: override CFLAGS += -mavx2 -mfma -mf16c -mavx512f -mavx512vl -mavx512vnni $(XMM16_FIXED)
$(O)/obj/kernels/avx512/gfni.o: override CFLAGS += -mgfni
$(O)/obj/kernels/neon/%_dot.o: override CFLAGS += -march=armv8.2-a+dotprod
$(O)/obj/kernels/neon/%_fp16.o: override CFLAGS += -march=armv8.2-a+fp16
$(O)/obj/kernels/neon/%_i8mm.o: override CFLAGS += -march=armv8.2-a+dotprod+i8mm

$(O)/obj/%.o: %.c $(wildcard src/*.h src/image/*.h kernels/*.h kernels/*/*.h include/*.h weights-tool/*.h tests/*.h tests/fuzz/*.h bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(call obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(O)/vlm-run: $(call obj,src/vlm-run.c) $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/weights-tool: $(call obj,weights-tool/main.c) $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/tests/%: $(O)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(TOOL_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Fuzz targets (LLVMFuzzerTestOneInput) built with a plain replay driver that feeds them files
# or directories of files; `make fuzz` builds the same sources with clang's libFuzzer.
$(O)/fuzz/fuzz_%: $(O)/obj/tests/fuzz/fuzz_%.o $(O)/obj/tests/fuzz/driver.o $(TOOL_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/%: $(O)/obj/bench/%.o $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Tests run from the repository root; RUN prefixes them (qemu-aarch64 for cross builds).
test: all
	@fail=0; for t in $(TESTS); do \
	  echo "== $$t"; $(RUN) $$t || { echo "FAILED: $$t"; fail=1; }; \
	done; exit $$fail

# Fuzz corpora: tests/data/**/corpus/fuzz_<name>/; fuzz_npy replays the golden .npy files.
# Replays every fuzz target over its corpus (CI runs this under the sanitizers).
fuzz-replay: $(FUZZ_REPLAY)
	@fail=0; for f in $(FUZZ_REPLAY); do t=$$(basename $$f); \
	  dirs="$$(find tests/data -type d -path '*corpus*' -name $$t)"; \
	  [ $$t = fuzz_npy ] && dirs="tests/data/fixtures/tiny-v2/goldens tests/data/preprocess"; \
	  [ -n "$$dirs" ] || { echo "no corpus for $$t"; fail=1; continue; }; \
	  $(RUN) $$f $$dirs || { echo "FAILED: $$t"; fail=1; }; \
	done; exit $$fail

# AddressSanitizer + UndefinedBehaviorSanitizer build of everything, then the tests and corpora.
SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
sanitize:
	$(MAKE) O=build-asan OPT="-O1 $(SAN)" LDFLAGS="$(SAN)" test fuzz-replay

# libFuzzer (clang): FUZZ_SECONDS per target, starting from the corpora. Needs clang.
# The library and tool objects are built once by this Makefile with clang (so kernels/<isa>/
# files keep their per-ISA flags), instrumented with fuzzer-no-link; each target links them.
FUZZ_SECONDS ?= 60
FUZZ_LIB_O := build-fuzz/lib
fuzz:
	$(MAKE) O=$(FUZZ_LIB_O) CC=clang OPT="-O1 -fsanitize=fuzzer-no-link,address,undefined" \
	  $(FUZZ_LIB_O)/libvlm.a $(patsubst %.c,$(FUZZ_LIB_O)/obj/%.o,$(TOOL_SRC))
	@for src in $(FUZZ_SRC); do t=$$(basename $$src .c); \
	  dirs="$$(find tests/data -type d -path '*corpus*' -name $$t)"; \
	  [ $$t = fuzz_npy ] && dirs="tests/data/fixtures/tiny-v2/goldens"; \
	  mkdir -p build-fuzz/corpus/$$t; \
	  clang -std=c11 -O1 -g -D_GNU_SOURCE -Iinclude -Isrc -Isrc/image -Ikernels -Iweights-tool \
	    -fsanitize=fuzzer,address,undefined -o build-fuzz/$$t $$src \
	    $(patsubst %.c,$(FUZZ_LIB_O)/obj/%.o,$(TOOL_SRC)) $(FUZZ_LIB_O)/libvlm.a -lm -lpthread || exit 1; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -artifact_prefix=build-fuzz/$$t- \
	    build-fuzz/corpus/$$t $$dirs > build-fuzz/$$t.log 2>&1; rc=$$?; \
	  grep -E '^#[0-9]+.*DONE|^Done' build-fuzz/$$t.log; \
	  [ $$rc = 0 ] || { tail -40 build-fuzz/$$t.log; echo "FAILED: $$t (log build-fuzz/$$t.log)"; exit 1; }; \
	done

# test_alloc replaces malloc and forwards to glibc's __libc_malloc, which a fully static link
# cannot do (libc.a's malloc.o defines both): with STATIC=1 it reports itself skipped.
ifeq ($(STATIC),1)
$(O)/obj/tests/test_alloc.o: override CFLAGS += -DVLM_TEST_STATIC
endif

# Long runs, not part of `make test`: the soak program (SOAK_ROUNDS generations in one process,
# RSS and heap flat) and the converter's allocation-failure sweep.
SOAK_ROUNDS ?= 200
$(O)/soak: $(O)/obj/tests/soak/soak.o $(TEST_SUPPORT_OBJ) $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

soak: $(O)/soak $(O)/tests/test_alloc
	$(RUN) $(O)/soak $(SOAK_ROUNDS)
	$(RUN) $(O)/tests/test_alloc convert

# Valgrind memcheck of the end-to-end path: convert the tiny MobileVLM V2 fixture, answer about
# its image with vlm-run, and a short soak; any error or definite/indirect leak fails.
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect
valgrind: $(O)/vlm-run $(O)/weights-tool $(O)/soak
	$(VALGRIND) $(O)/weights-tool convert tests/data/fixtures/tiny-v2 -o $(O)/valgrind-tiny-v2.vlm --quant q8
	$(VALGRIND) $(O)/vlm-run -m $(O)/valgrind-tiny-v2.vlm -i tests/data/fixtures/tiny-v2/goldens/image.jpg \
	    -p "What is in the image?" -n 8 -t 2 --stats
	$(VALGRIND) $(O)/soak 8 noflat
	rm -f $(O)/valgrind-tiny-v2.vlm

# Install (PREFIX=/usr/local, DESTDIR for staging): the programs, libvlm.a, vlm.h, vlm.pc.
PREFIX ?= /usr/local
install: $(O)/vlm-run $(O)/weights-tool $(LIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(O)/vlm-run $(O)/weights-tool $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/vlm.h $(DESTDIR)$(PREFIX)/include/
	sed 's|@PREFIX@|$(PREFIX)|' vlm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vlm.pc

# No download: the tiny random-weight MobileVLM V2 fixture and the real stories260K model.
demo: $(O)/vlm-run $(O)/weights-tool $(O)/example_api
	$(RUN) $(O)/weights-tool convert tests/data/fixtures/tiny-v2 -o $(O)/demo-tiny-v2.vlm --quant f32
	$(RUN) $(O)/weights-tool convert tests/data/fixtures/stories260K-hf -o $(O)/demo-stories.vlm --quant f32
	@echo "== tiny MobileVLM V2 fixture: RANDOM weights, so the answer is noise (every number matches PyTorch)"
	$(RUN) $(O)/vlm-run -m $(O)/demo-tiny-v2.vlm -i tests/data/fixtures/tiny-v2/goldens/image.jpg \
	  -p "What is in the image?" -n 24 --stats
	@echo "== the API example (bench/example_api.c): two questions in one conversation (noise again)"
	$(RUN) $(O)/example_api $(O)/demo-tiny-v2.vlm tests/data/fixtures/tiny-v2/goldens/image.jpg
	@echo "== stories260K, a real (tiny) model trained on children's stories"
	$(RUN) $(O)/vlm-run -m $(O)/demo-stories.vlm -p "Once upon a time" -n 150

.PHONY: install demo

clean:
	rm -rf build build-*

.PHONY: all test clean fuzz fuzz-replay sanitize soak valgrind
.SECONDARY:
