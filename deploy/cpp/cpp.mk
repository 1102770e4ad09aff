# The C++ runtime (deploy/cpp): its Debian packages and ONNX Runtime headers (install_deps.sh,
# cached under deploy/cpp/build/deps), a Release build, and its GoogleTest suite under ctest.
CPP_DIR := deploy/cpp
CPP_BUILD := $(CPP_DIR)/build/release

.PHONY: cpp cpp-test

cpp: $(STAMP)
	$(CPP_DIR)/install_deps.sh
	cmake -S $(CPP_DIR) -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) -j2

cpp-test: cpp
	cd $(CPP_BUILD) && ctest -j2 --output-on-failure
