# The C++ runtime (deploy/cpp): its Debian packages and ONNX Runtime headers (install_deps.sh,
# cached under deploy/cpp/build/deps), a Release build, and its GoogleTest suite under ctest;
# then (cpp-asan) the same suite built with AddressSanitizer and UndefinedBehaviorSanitizer.
CPP_DIR := deploy/cpp
CPP_BUILD := $(CPP_DIR)/build/release
CPP_ASAN := $(CPP_DIR)/build/asan

.PHONY: cpp cpp-test cpp-asan

# The bundle's rules come from the Python schema: regenerated first (rewritten only when they changed).
cpp: $(STAMP)
	$(CPP_DIR)/install_deps.sh
	$(BIN)/python -m at2seld_edge.deploy.bundle_limits
	cmake -S $(CPP_DIR) -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) -j2

cpp-test: cpp
	cd $(CPP_BUILD) && ctest -j2 --output-on-failure

# AddressSanitizer and UndefinedBehaviorSanitizer over the library, the tools and the tests; any
# report aborts the process, so the test that ran it fails. ONNX Runtime (the wheel's library),
# protobuf and libsndfile are not instrumented: ASan checks every access our code makes (our reads
# of the tensors ONNX Runtime returns included), not the accesses made inside them. Leak detection
# stays on (detect_leaks=1, LeakSanitizer sees every allocation, theirs too): ONNX Runtime's
# environment and protobuf's descriptors are still reachable at exit, so they are not reported,
# and no suppression is needed. The sanitized build reuses the release build's fixture bundles
# and wav (cpp-test made them), so its extra time is its build and the suite, printed at the end.
CPP_ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

cpp-asan: cpp-test
	@start=$$(date +%s); \
	cmake -S $(CPP_DIR) -B $(CPP_ASAN) -DCMAKE_BUILD_TYPE=Release -DAT2SELD_SANITIZE=address,undefined \
	  -DAT2SELD_TEST_FIXTURES=$(abspath $(CPP_BUILD))/tests/fixtures >/dev/null && \
	cmake --build $(CPP_ASAN) -j2 && \
	(cd $(CPP_ASAN) && $(CPP_ASAN_ENV) ctest -j2 --output-on-failure); \
	rc=$$?; echo "cpp-asan: ASan/UBSan build and suite $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc
