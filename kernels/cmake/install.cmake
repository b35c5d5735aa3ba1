# `cmake --install`: the library, sparsekit.h, a CMake package
# (find_package(sparsekit CONFIG) -> sparsekit::sparsekit) and sparsekit.pc.
include(CMakePackageConfigHelpers)
set(SK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sparsekit)

install(TARGETS sparsekit EXPORT sparsekitTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/sparsekit.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT sparsekitTargets NAMESPACE sparsekit:: DESTINATION ${SK_CMAKE_DIR})

# The exported static library names OpenMP::OpenMP_C among its link needs;
# the package config finds it for the consumer (a shared library hides it).
set(SK_PACKAGE_NEEDS_OPENMP OFF)
if(SK_OPENMP AND NOT SK_SHARED)
  set(SK_PACKAGE_NEEDS_OPENMP ON)
endif()
configure_package_config_file(cmake/sparsekitConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/sparsekitConfig.cmake
                              INSTALL_DESTINATION ${SK_CMAKE_DIR})
# 0.x: only the same minor version is compatible.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/sparsekitConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sparsekitConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/sparsekitConfigVersion.cmake
        DESTINATION ${SK_CMAKE_DIR})

# sparsekit.pc finds its prefix from its own location (${pcfiledir}), so the
# installed tree can move (cmake --install --prefix, DESTDIR, a copied SDK).
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(SK_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(SK_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(SK_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH SK_PC_UP /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
  string(REGEX REPLACE "/$" "" SK_PC_UP "${SK_PC_UP}")
  set(SK_PC_PREFIX "\${pcfiledir}/${SK_PC_UP}")
  set(SK_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(SK_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# What a static link needs besides -lsparsekit (pkg-config --libs --static).
set(SK_PC_LIBS_PRIVATE "")
if(SK_OPENMP)
  string(APPEND SK_PC_LIBS_PRIVATE " ${OpenMP_C_FLAGS}")
endif()
string(APPEND SK_PC_LIBS_PRIVATE " -lm")
string(STRIP "${SK_PC_LIBS_PRIVATE}" SK_PC_LIBS_PRIVATE)
# A sanitized library needs the sanitizer runtimes in every link.
set(SK_PC_LIBS_SANITIZE "")
if(SK_SANITIZE)
  list(JOIN SK_SAN " " SK_PC_LIBS_SANITIZE)
  string(PREPEND SK_PC_LIBS_SANITIZE " ")
endif()
configure_file(cmake/sparsekit.pc.in ${CMAKE_CURRENT_BINARY_DIR}/sparsekit.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sparsekit.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
