// Detect and localize the sound events of a FOA recording with an at2seld-edge bundle.
#include <at2seld/runtime.hpp>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: detect BUNDLE FILE.wav\n";
    return 2;
  }
  try {
    at2seld::Runtime rt = at2seld::Runtime::open(argv[1]);  // checks every file before loading
    const at2seld::Manifest& m = rt.manifest();
    at2seld::Audio audio = at2seld::read_foa(argv[2], m.sample_rate);
    at2seld::Prediction p = rt.predict(audio.data.data(), audio.samples);
    for (const at2seld::Detection& d : p.detections) {
      std::cout << d.frame * m.label_hop_s << " s: " << m.class_names[d.cls] << " at azimuth "
                << d.azimuth_deg() << ", elevation " << d.elevation_deg() << " deg\n";
    }
    std::cout << p.detections.size() << " detections in " << p.frames << " frames\n";
  } catch (const at2seld::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exit_code();
  }
}
