# `cmake --install BUILD [--prefix P]`: the lockstep command, liblockstep.so and .a, the
# public headers under include/lockstep/ (lockstep.h and the headers it includes), a CMake
# package (find_package(lockstep): lockstep::lockstep, the shared library, and
# lockstep::lockstep_static) and a pkg-config file (lockstep.pc; --static for the .a).
# Both are relocatable: they find the prefix from where they are installed.
include(CMakePackageConfigHelpers)

set(LK_PUBLIC_HEADERS lockstep.h comm/comm.h core/arena.h core/bf16.h core/checkpoint.h core/common.h
    core/device.h core/guard_rule.h core/half.h core/layer.h core/layers.h core/model.h core/ops.h
    core/optim.h core/rng.h core/tensor.h data/dataset.h models/spec.h models/zoo.h train/ckptdir.h
    train/predict.h train/sample.h train/trainer.h train/private_training.h)
foreach(h ${LK_PUBLIC_HEADERS})
  get_filename_component(dir ${h} DIRECTORY)
  install(FILES ${CMAKE_SOURCE_DIR}/src/${h} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/lockstep/${dir})
endforeach()

if(LK_SANITIZE) # an instrumented library wants instrumented programs
  target_link_options(lockstep_shared INTERFACE -fsanitize=address,undefined)
  target_link_options(lockstep_core INTERFACE -fsanitize=address,undefined)
  set(LK_PC_SANITIZE "-fsanitize=address,undefined")
endif()
set_target_properties(lockstep_shared PROPERTIES EXPORT_NAME lockstep)
set_target_properties(lockstep_core PROPERTIES EXPORT_NAME lockstep_static)
install(TARGETS lockstep RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS lockstep_shared lockstep_core lk_dnnl EXPORT lockstepTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
set(LK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/lockstep)
install(EXPORT lockstepTargets NAMESPACE lockstep:: DESTINATION ${LK_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/lockstepConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/lockstepConfig.cmake INSTALL_DESTINATION ${LK_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/lockstepConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/lockstepConfig.cmake ${CMAKE_BINARY_DIR}/lockstepConfigVersion.cmake
        DESTINATION ${LK_CMAKE_DIR})

# pkg-config: the prefix relative to the file's own place
file(RELATIVE_PATH LK_PC_UP "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" LK_PC_UP "${LK_PC_UP}")
set(LK_PC_PRIVATE "${LK_DNNL_LIB} ${OpenMP_C_FLAGS} -pthread")
foreach(lib ${MPI_C_LIBRARIES} m)
  if(lib MATCHES "^/" OR lib MATCHES "^-")
    string(APPEND LK_PC_PRIVATE " ${lib}")
  else()
    string(APPEND LK_PC_PRIVATE " -l${lib}")
  endif()
endforeach()
if(LK_HAVE_CUDA)
  string(APPEND LK_PC_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcudart -lcublas ${LK_CUDNN_LIB} -lstdc++")
  if(LK_HAVE_NCCL)
    string(APPEND LK_PC_PRIVATE " ${LK_NCCL_LIB}")
  endif()
endif()
configure_file(${CMAKE_SOURCE_DIR}/cmake/lockstep.pc.in ${CMAKE_BINARY_DIR}/lockstep.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/lockstep.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
